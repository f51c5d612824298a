"""Shared settings. The environment chooses the database, the channel layer and the backend:

DATABASE_URL         set: that database (dj-database-url's format, e.g. PostgreSQL as
                     postgres://USER:PASSWORD@HOST:5432/NAME); unset: the SQLite file SQLITE_PATH
REDIS_URL            set: channels_redis pub/sub layer on that Redis (and the Fanout backend's
                     stream positions); unset: in-memory layer, positions in memory
REDIS_SENTINELS      instead of REDIS_URL: Redis Sentinels (HOST:PORT,HOST:PORT), which name the
REDIS_SENTINEL_MASTER  primary monitored as REDIS_SENTINEL_MASTER: the same, following failovers
REDIS_LAYER          "pubsub" (default) or "core": which channels_redis layer Redis gets
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
# htmx for the demo's page without JavaScript of its own, from the npm registry (demo/package.json;
# ./dev setup and ./dev demo install it), served as static/htmx/htmx.min.js.
htmx_dir = BASE_DIR / "demo" / "node_modules" / "htmx.org" / "dist"
if htmx_dir.is_dir():
    STATICFILES_DIRS.append(("htmx", htmx_dir))

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


def redis_hosts(env) -> list[dict] | None:
    """The channels_redis host the environment names (None: no Redis): REDIS_URL, or the
    primary the sentinels of REDIS_SENTINELS know as REDIS_SENTINEL_MASTER."""
    url = env.get("REDIS_URL")
    sentinels = env.get("REDIS_SENTINELS", "").strip()
    master = env.get("REDIS_SENTINEL_MASTER", "").strip()
    # redis-py 8 defaults (socket_timeout=5, max_connections=100) break a long-lived
    # subscriber; see docs/deployment.md.
    options = {"socket_timeout": None, "max_connections": 1000}
    if not sentinels and not master:
        return [{"address": url, **options}] if url else None
    if url:
        raise ImproperlyConfigured(
            "Set REDIS_URL or REDIS_SENTINELS, not both (with REDIS_SENTINELS, "
            "REDIS_SENTINEL_MASTER names the primary)"
        )
    if not master:
        raise ImproperlyConfigured(
            "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the name the "
            "sentinels monitor the primary under)"
        )
    if not sentinels:
        raise ImproperlyConfigured("REDIS_SENTINEL_MASTER needs REDIS_SENTINELS (HOST:PORT,...)")
    return [{**sentinel_primary(sentinels, master), **options}]


def sentinel_primary(sentinels: str, master: str) -> dict:
    """A channels_redis host entry for the primary `master` that `sentinels` (the text of
    REDIS_SENTINELS: HOST:PORT,HOST:PORT; an IPv6 host in brackets) know."""
    addresses = []
    for item in (part.strip() for part in sentinels.split(",")):
        host, _, port = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(
                f"REDIS_SENTINELS={sentinels!r}: {item!r} is not HOST:PORT; give the "
                "sentinels as HOST:PORT,HOST:PORT (e.g. 10.0.0.1:26379,10.0.0.2:26379)"
            )
        addresses.append((host, int(port)))
    return {"sentinels": addresses, "master_name": master}


def channel_layers(hosts: list[dict] | None, kind: str = "pubsub") -> dict:
    if not hosts:
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
    return {"default": {"BACKEND": backend, "CONFIG": {"hosts": hosts}}}


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
    positions = {}
    if redis_hosts(env):
        positions["POSITIONS"] = env.get("REDIS_URL") or sentinel_primary(
            env["REDIS_SENTINELS"], env["REDIS_SENTINEL_MASTER"].strip()
        )
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
CHANNEL_LAYERS = channel_layers(redis_hosts(os.environ), os.environ.get("REDIS_LAYER", "pubsub"))
PUSHGATEWAY = pushgateway_settings(os.environ)
if os.environ.get("PUSHGATEWAY_METRICS"):  # Prometheus metrics at /metrics (docs/metrics.md)
    PUSHGATEWAY["OPTIONS"]["METRICS"] = True
