"""Shared settings. The environment chooses the database, the channel layer and the backend:

DATABASE_URL         set: that database (dj-database-url's format, e.g. PostgreSQL as
                     postgres://USER:PASSWORD@HOST:5432/NAME); unset: the SQLite file SQLITE_PATH
REDIS_URL            set: channels_redis pub/sub layer on that Redis (and the Fanout backend's
                     stream positions); unset: in-memory layer, positions in memory
REDIS_LAYER          "pubsub" (default) or "core": which channels_redis layer REDIS_URL gets
PUSHGATEWAY_METRICS  set: Prometheus metrics on, served at /metrics
PUSHGATEWAY_BACKEND  "channels" (default) or "fanout" (reads GRIP_URL, or FANOUT_REALM and
                     FANOUT_KEY)
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-not-secret")
DEBUG = False
ALLOWED_HOSTS: list[str] = []

INSTALLED_APPS = [
    "daphne",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "pushgateway",
    "channels_app",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "pushgateway.middleware.ClientIdMiddleware",
]

ROOT_URLCONF = "demo.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
ASGI_APPLICATION = "channels_app.asgi.application"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# In this repository the browser module lives in static/js/; the wheel ships it inside the
# pushgateway app, at the same URL path (pushgateway/pushgateway.js). Without static/js/ (the
# tests of the installed wheel run on a copy of the project without the apps) the app's copy
# is served.
browser_module_dir = BASE_DIR / "static" / "js"
STATICFILES_DIRS = [("pushgateway", browser_module_dir)] if browser_module_dir.is_dir() else []

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"pushgateway": {"handlers": ["console"], "level": "INFO"}},
}


def databases(env) -> dict:
    url = env.get("DATABASE_URL")
    if not url:
        sqlite = env.get("SQLITE_PATH", BASE_DIR / "db.sqlite3")
        return {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite}}
    try:
        import dj_database_url
    except ImportError:
        raise ImproperlyConfigured(
            "DATABASE_URL needs dj-database-url (and psycopg for PostgreSQL): "
            "pip install 'django-pushgateway[postgres]'"
        ) from None
    # CONN_MAX_AGE stays 0: Django advises against persistent connections under ASGI.
    return {"default": dj_database_url.parse(url)}


def channel_layers(redis_url: str | None, kind: str = "pubsub") -> dict:
    if not redis_url:
        # The hub reads this layer as fast as messages come; a roomy capacity keeps a burst
        # from being dropped silently (the in-memory layer drops past capacity).
        return {
            "default": {
                "BACKEND": "channels.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": 10_000},
            }
        }
    if kind not in ("pubsub", "core"):
        raise ImproperlyConfigured(f"REDIS_LAYER={kind!r} is not supported; use 'pubsub' or 'core'")
    backend = {
        "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "core": "channels_redis.core.RedisChannelLayer",
    }[kind]
    return {
        "default": {
            "BACKEND": backend,
            "CONFIG": {
                # redis-py 8 defaults (socket_timeout=5, max_connections=100) break a
                # long-lived subscriber; see docs/deployment.md.
                "hosts": [{"address": redis_url, "socket_timeout": None, "max_connections": 1000}],
            },
        }
    }


def pushgateway_settings(env) -> dict:
    backend = env.get("PUSHGATEWAY_BACKEND", "channels")
    if backend == "channels":
        return {"BACKEND": "pushgateway.backends.channels.ChannelsBackend", "OPTIONS": {}}
    if backend != "fanout":
        raise ImproperlyConfigured(
            f"PUSHGATEWAY_BACKEND={backend!r} is not supported; use 'channels' or 'fanout'"
        )
    fanout = "pushgateway.backends.fanout.FanoutBackend"
    # Stream positions go to Redis whenever the project has one (shared by every process).
    positions = {"POSITIONS": env["REDIS_URL"]} if env.get("REDIS_URL") else {}
    if env.get("GRIP_URL"):
        return {"BACKEND": fanout, "OPTIONS": {"GRIP_URL": env["GRIP_URL"], **positions}}
    if env.get("FANOUT_REALM") and env.get("FANOUT_KEY"):
        options = {"REALM": env["FANOUT_REALM"], "REALM_KEY": env["FANOUT_KEY"], **positions}
        # Where the realm API and the Faye client live, for local stand-ins.
        for name, option in [
            ("FANOUT_REALM_URL", "REALM_URL"),
            ("FANOUT_FAYE_URL", "FAYE_URL"),
            ("FANOUT_FAYE_INTEGRITY", "FAYE_INTEGRITY"),
        ]:
            if env.get(name):
                options[option] = env[name]
        return {"BACKEND": fanout, "OPTIONS": options}
    raise ImproperlyConfigured(
        "PUSHGATEWAY_BACKEND=fanout needs GRIP_URL (Fastly Fanout or Pushpin), "
        "or FANOUT_REALM and FANOUT_KEY (legacy Fanout.io)"
    )


DATABASES = databases(os.environ)
CHANNEL_LAYERS = channel_layers(
    os.environ.get("REDIS_URL"), os.environ.get("REDIS_LAYER", "pubsub")
)
PUSHGATEWAY = pushgateway_settings(os.environ)
if os.environ.get("PUSHGATEWAY_METRICS"):  # Prometheus metrics at /metrics (docs/metrics.md)
    PUSHGATEWAY["OPTIONS"]["METRICS"] = True
