import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import django
import pytest
from django.conf import settings
from django.test import override_settings

# The test process itself serves sockets only in-process: no GC freezing there (it would
# keep every later test's cyclic garbage). Real servers started by tests get the default
# (tests/support/servers.py drops this variable from their environment).
os.environ["PUSHGATEWAY_TUNING"] = "off"

import pushgateway

LOCMEM = {"BACKEND": "pushgateway.backends.locmem.LocMemBackend"}

# settings.test's database aliases, by the test id that names them.
DATABASES = {"sqlite": "default", "postgresql": "postgres"}
# The databases of server processes, by the test id that names them (their fixtures).
SERVER_DATABASES = {"sqlite": "database", "postgresql": "postgres_database"}


def _on(alias):
    return pytest.mark.django_db(databases=[alias], transaction=True)


@pytest.fixture(params=[pytest.param(a, id=name, marks=_on(a)) for name, a in DATABASES.items()])
def alias(request):
    """The database alias a test runs on: once SQLite, once PostgreSQL."""
    return request.param


# Tests are grouped by what they need, each group a folder and a marker of that name.
KINDS = ("unit", "integration", "system")


def pytest_collection_modifyitems(items):
    for item in items:
        kind = item.path.parent.name
        if kind in KINDS:
            item.add_marker(kind)


def pytest_report_header(config):
    postgres = settings.DATABASES["postgres"]
    return [
        f"pushgateway {pushgateway.__file__} on Python {platform.python_version()}, "
        f"Django {django.get_version()}",
        f"databases: sqlite (in memory), postgresql {postgres['TEST']['NAME']} on "
        f"{postgres['HOST']}:{postgres['PORT']} (created when a test needs it, dropped after)",
    ]


def pytest_terminal_summary(terminalreporter):
    """Say how many tests passed on each database (those that name it in their id)."""
    passed = dict.fromkeys(DATABASES, 0)
    for report in terminalreporter.stats.get("passed", []):
        ids = re.search(r"\[(.*)\]$", report.nodeid)
        for name in set(re.findall(r"\w+", ids.group(1))) & set(DATABASES) if ids else ():
            passed[name] += 1
    if any(passed.values()):
        counts = ", ".join(f"{count} on {name}" for name, count in passed.items())
        terminalreporter.write_line(f"tests per database passed: {counts}")


@pytest.fixture
def outbox():
    """Publish into pushgateway.outbox (the locmem backend) for the duration of a test."""
    with override_settings(PUSHGATEWAY=LOCMEM):
        pushgateway.outbox.clear()
        yield pushgateway.outbox
        pushgateway.outbox.clear()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel under test: the one the wheel combination installed (PUSHGATEWAY_WHEEL names
    it), else one built from this checkout."""
    if os.environ.get("PUSHGATEWAY_WHEEL"):
        return Path(os.environ["PUSHGATEWAY_WHEEL"])
    from tests.support.servers import ROOT

    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "uv", "build", "--quiet", "--wheel", "--out-dir", str(out)]
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True)
    [path] = out.glob("django_pushgateway-*.whl")
    return path


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def database(tmp_path_factory):
    """The SQLite file the suite's server processes share."""
    from tests.support.servers import SqliteDatabase

    return SqliteDatabase(tmp_path_factory.mktemp("db") / "db.sqlite3")


@pytest.fixture(scope="session")
def postgres_database():
    """A PostgreSQL database the suite's server processes share, dropped after the session."""
    from tests.support.servers import PostgresDatabase

    database = PostgresDatabase()
    yield database
    database.drop()


@pytest.fixture(params=[pytest.param(f, id=name) for name, f in SERVER_DATABASES.items()])
def server_database(request):
    """The database of the server processes a test starts: once SQLite, once PostgreSQL."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def redis(log_dir):
    """A Redis of the suite's own (not the machine's), shared by tests that do not break it."""
    from tests.support.servers import RedisServer

    server = RedisServer(log_dir)
    yield server
    server.stop()


@pytest.fixture
def own_redis(log_dir):
    """A Redis for one test, which it may stop and start."""
    from tests.support.servers import RedisServer

    server = RedisServer(log_dir)
    yield server
    server.stop()


@pytest.fixture
def start_redis(log_dir):
    """Start Redis servers of a test's own, with redis-server `options` (persistence...);
    all are stopped after the test."""
    from tests.support.servers import RedisServer

    started = []

    def start(*options):
        started.append(RedisServer(log_dir, *options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sentinel_redis(log_dir):
    """A primary and a replica under three Redis Sentinels, for one test (it may fail them
    over)."""
    from tests.support.servers import SentinelRedis

    servers = SentinelRedis(log_dir)
    yield servers
    servers.stop()


@pytest.fixture
def pushpin_in_front(log_dir, start_daphne):
    """Start daphne with the Fanout backend publishing to a real Pushpin in front of it."""
    from tests.support.servers import Pushpin

    started = []

    def start(**env):
        pushpin = Pushpin(log_dir)
        origin = start_daphne(PUSHGATEWAY_BACKEND="fanout", GRIP_URL=pushpin.grip_url, **env)
        pushpin.start(origin.port)
        pushpin.origin = origin
        started.append(pushpin)
        return pushpin

    yield start
    for pushpin in started:
        pushpin.stop()


@pytest.fixture(scope="session")
def pushpin_origin(log_dir, database, redis):
    """One real Pushpin in front of one daphne (Fanout backend, positions in the suite's
    Redis), shared by the tests that only send it requests: the attacks and the fuzzing of
    what a client can send through a proxy. `pushpin.origin` is the daphne."""
    from tests.support.servers import Daphne, Pushpin

    pushpin = Pushpin(log_dir)
    env = {"PUSHGATEWAY_BACKEND": "fanout", "GRIP_URL": pushpin.grip_url}
    pushpin.origin = Daphne(log_dir, database, redis.url, **env)
    pushpin.start(pushpin.origin.port)
    yield pushpin
    pushpin.stop()
    pushpin.origin.stop()


@pytest.fixture
def start_daphne(log_dir, database):
    """Start daphne processes of this project (on the SQLite file unless told another
    database; under another server if told, e.g. tests.support.servers.Uvicorn); all are stopped
    after the test."""
    from tests.support.servers import Daphne

    started = []
    sqlite = database

    def start(redis_url=None, database=sqlite, server=Daphne, **env):
        process = server(log_dir, database, redis_url, **env)
        started.append(process)
        return process

    yield start
    for server in started:
        server.stop()


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Module scope: while Playwright's sync API runs, the main thread has a running event loop,
# which async tests of other modules cannot share.
@pytest.fixture(scope="module")
def browser():
    """The system Chromium, driven by Playwright (it cannot download its own here)."""
    from playwright.sync_api import sync_playwright

    from tests.support.servers import require

    executable = require("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
