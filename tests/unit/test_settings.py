"""This project's settings read the environment; bad values are clear errors."""

import re
import subprocess
import sys

import pytest

from tests.support.servers import ROOT

pytestmark = pytest.mark.matrix  # depends on the Python or Django version

SHOW = (
    "import django; django.setup(); from django.conf import settings as s;"
    "print(s.PUSHGATEWAY['BACKEND'].rsplit('.', 1)[1],"
    " s.CHANNEL_LAYERS['default']['BACKEND'].rsplit('.', 1)[1])"
)


SHOW_DATABASE = (
    "import django; django.setup(); from django.conf import settings as s;"
    "d = s.DATABASES['default']; print(d['ENGINE'].rsplit('.', 1)[1], d['NAME'], d['HOST'])"
)


def run(module, show=SHOW, **env):
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": module}
    return subprocess.run(
        [sys.executable, "-c", show], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "ChannelsBackend InMemoryChannelLayer"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "ChannelsBackend RedisPubSubChannelLayer"),
        (
            {"PUSHGATEWAY_BACKEND": "fanout", "GRIP_URL": "http://127.0.0.1:1?key=k"},
            "FanoutBackend InMemoryChannelLayer",
        ),
        (
            {"PUSHGATEWAY_BACKEND": "fanout", "FANOUT_REALM": "r", "FANOUT_KEY": "a2V5"},
            "FanoutBackend InMemoryChannelLayer",
        ),
    ],
)
def test_environment_selects_layer_and_backend(env, expected):
    for module in ("settings.dev", "settings.test"):
        result = run(module, **env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected


SENTINELS = {"REDIS_SENTINELS": "10.0.0.1:26379, [::1]:26380", "REDIS_SENTINEL_MASTER": "main"}
SHOW_HOSTS = (
    "import django; django.setup(); from django.conf import settings as s;"
    "print(s.CHANNEL_LAYERS['default']['CONFIG']['hosts'], s.PUSHGATEWAY['OPTIONS'])"
)


def test_redis_sentinels_give_the_layer_and_the_positions_a_sentinel_managed_primary():
    primary = {
        "sentinels": [("10.0.0.1", 26379), ("::1", 26380)],
        "master_name": "main",
        "socket_timeout": None,
        "max_connections": 1000,
    }
    result = run("settings.dev", SHOW_HOSTS, **SENTINELS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{[primary]} {{}}"
    fanout = {"PUSHGATEWAY_BACKEND": "fanout", "GRIP_URL": "http://127.0.0.1:1?key=k"}
    from settings.base import pushgateway_settings

    options = pushgateway_settings({**SENTINELS, **fanout})["OPTIONS"]
    assert options["POSITIONS"] == {
        "sentinels": [("10.0.0.1", 26379), ("::1", 26380)],
        "master_name": "main",
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SENTINELS": "10.0.0.1:26379"}, "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "main"}, "REDIS_SENTINEL_MASTER needs REDIS_SENTINELS"),
        ({**SENTINELS, "REDIS_URL": "redis://r:6379/0"}, "REDIS_URL or REDIS_SENTINELS, not both"),
        ({**SENTINELS, "REDIS_SENTINELS": "10.0.0.1"}, "'10.0.0.1' is not HOST:PORT"),
        ({**SENTINELS, "REDIS_SENTINELS": "a:26379,,b:1"}, "'' is not HOST:PORT"),
        ({**SENTINELS, "REDIS_SENTINELS": "a:http"}, "'a:http' is not HOST:PORT"),
        ({**SENTINELS, "REDIS_SENTINELS": "a:70000"}, "'a:70000' is not HOST:PORT"),
        ({**SENTINELS, "REDIS_SENTINELS": ":26379"}, "':26379' is not HOST:PORT"),
        ({**SENTINELS, "REDIS_SENTINELS": "redis://a:26379"}, "'redis://a:26379' is not HOST"),
    ],
)
def test_bad_redis_sentinels_are_a_clear_error(env, message):
    from django.core.exceptions import ImproperlyConfigured

    from settings.base import redis_hosts

    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        redis_hosts(env)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PUSHGATEWAY_BACKEND": "pusher"}, "PUSHGATEWAY_BACKEND='pusher' is not supported"),
        ({"PUSHGATEWAY_BACKEND": "fanout"}, "needs GRIP_URL"),
    ],
)
def test_bad_environment_is_a_clear_error(env, message):
    result = run("settings.dev", **env)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize("module", ["settings.dev", "settings.production"])
def test_database_url_selects_the_database_and_sqlite_is_the_default(module):
    env = {"SECRET_KEY": "s" * 50, "ALLOWED_HOSTS": "example.org", "SQLITE_PATH": "/tmp/pg.db"}
    result = run(module, SHOW_DATABASE, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sqlite3 /tmp/pg.db"
    url = "postgres://shop:secret@db.example.org:5433/shop"
    result = run(module, SHOW_DATABASE, DATABASE_URL=url, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "postgresql shop db.example.org"


def test_production_needs_secret_key_and_allowed_hosts_and_nothing_else():
    result = run("settings.production")
    assert "settings.production needs the environment variable SECRET_KEY" in result.stderr
    result = run("settings.production", SECRET_KEY="s" * 50)
    assert "needs the environment variable ALLOWED_HOSTS" in result.stderr
    result = run("settings.production", SECRET_KEY="s" * 50, ALLOWED_HOSTS="example.org, a.b")
    assert result.returncode == 0, result.stderr
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "settings.production",
            "SECRET_KEY": "s" * 50,
            "ALLOWED_HOSTS": "example.org",
        },
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
