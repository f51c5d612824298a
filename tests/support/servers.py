"""Real processes for tests: Redis and daphne on free loopback ports, stopped afterwards."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from websockets.sync.client import ClientConnection, connect

from demo import pushpin

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def require(program: str) -> str:
    """The path of `program`; a missing service is a failure, never a skip."""
    path = shutil.which(program)
    if path is None:
        raise RuntimeError(f"{program} is not installed; run ./dev setup")
    return path


class Process:
    """A child process whose output goes to a log file that failures can show."""

    def __init__(
        self, name: str, args: list[str], log_dir: Path, env: dict | None = None, pipes=False
    ):
        """With `pipes` the test talks to it: its stdin and stdout are text pipes
        (`proc.stdin`, `proc.stdout`), and only its stderr goes to the log."""
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        output = {"stdout": self._log, "stderr": subprocess.STDOUT}
        if pipes:
            output = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": self._log}
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, text=pipes, **output)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_port(self, port: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {port} in {timeout}s:\n{self.log()}")

    def stop(self, kill: bool = False) -> None:
        """Stop it: TERM (KILL after 10 s), or at once with `kill` (SIGKILL: no cleanup)."""
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self._log.close()


class RedisServer:
    """A Redis of its own on a free port, without persistence unless `options` (further
    redis-server arguments, e.g. "--appendonly", "yes") say otherwise. Its files (snapshots,
    AOF) live in `directory`, which outlives a restart."""

    def __init__(self, log_dir: Path, *options: str):
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = log_dir / f"redis-{self.port}"
        self.directory.mkdir()
        self.options = options
        self.process: Process | None = None
        self.start()

    def start(self) -> None:
        args = [require("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        # A replica's full sync starts at once, not after 5 s of waiting for other replicas.
        args += ["--repl-diskless-sync-delay", "0", *self.options]
        self.process = Process(f"redis-{self.port}", args, self.log_dir)
        self.process.wait_for_port(self.port)

    def stop(self, kill: bool = False) -> None:
        """Stop it (see Process.stop); `start()` starts it again from its files."""
        if self.process:
            self.process.stop(kill)
            self.process = None

    def client(self):
        """A redis-py client of this server (close it after use)."""
        import redis

        return redis.Redis(port=self.port, socket_timeout=5)


class SentinelRedis:
    """A primary and a replica watched by three Redis Sentinels, all on loopback
    (docs/deployment.md, "Production topology"). Starts with the replica in sync and every
    sentinel knowing the others; `fail_over_lagging()` makes the replica the primary after
    it missed the latest writes."""

    NAME = "pushgateway"

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.primary = RedisServer(log_dir)
        self.replica = RedisServer(log_dir, "--replicaof", "127.0.0.1", str(self.primary.port))
        # Sentinels learn of replicas from the primary's INFO at once, then every 10 s.
        self._wait_until(self._in_sync, "the replica did not sync")
        self.sentinels: list[tuple[int, Process]] = []
        self.sentinels += [self._start_sentinel() for _ in range(3)]
        #: The project's settings for them (settings/base.py).
        self.env = {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port, _ in self.sentinels),
            "REDIS_SENTINEL_MASTER": self.NAME,
        }
        #: A channels_redis host entry for them.
        self.host = {
            "sentinels": [("127.0.0.1", port) for port, _ in self.sentinels],
            "master_name": self.NAME,
        }
        self._wait_until(self._ready, "the sentinels did not find each other and the replica")

    def _start_sentinel(self) -> tuple[int, Process]:
        port = free_port()
        config = self.log_dir / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.log_dir}\n"
            f"sentinel monitor {self.NAME} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {self.NAME} 1000\n"
            f"sentinel failover-timeout {self.NAME} 3000\n"
        )
        args = [require("redis-server"), str(config), "--sentinel"]
        process = Process(f"sentinel-{port}", args, self.log_dir)
        process.wait_for_port(port)
        return port, process

    def _ask(self, port: int, question: str):
        """A sentinel's answer (redis-py parses it) to the sentinel command `question`."""
        import redis

        with redis.Redis(port=port, socket_timeout=2) as client:
            return getattr(client, question)(self.NAME)

    def _ready(self) -> bool:
        for port, _ in self.sentinels:
            state = self._ask(port, "sentinel_master")
            if state["num-other-sentinels"] != 2 or state["num-slaves"] != 1:
                return False
        return self._in_sync()

    def _in_sync(self) -> bool:
        with self.replica.client() as replica:
            return replica.info("replication")["master_link_status"] == "up"

    def primary_port(self) -> int:
        """The port the sentinels name as the primary's."""
        return int(self._ask(self.sentinels[0][0], "sentinel_get_master_addr_by_name")[1])

    def fail_over_lagging(self, meanwhile, peek=None):
        """Hold the replica's replication back, run `meanwhile()` (its writes reach the
        primary only), kill the primary (SIGKILL) and wait until the sentinels have promoted
        the replica, which never saw those writes. Returns `peek(replica)` (a redis-py
        client of it), called once the primary is dead and before the replica is promoted."""
        with self.replica.client() as replica:
            replica.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
            try:
                meanwhile()
                self.primary.stop(kill=True)
                # The replica drops what it read but had not applied when its link breaks.
                self._wait_until(
                    lambda: replica.info("replication")["master_link_status"] == "down",
                    "the replica did not notice the primary's death",
                )
                seen = peek(replica) if peek else None
            finally:
                replica.execute_command("CLIENT", "UNPAUSE")
        self._wait_until(lambda: self.primary_port() == self.replica.port, "no failover")
        return seen

    def _wait_until(self, done, failure: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                logs = "\n".join(process.log()[-2000:] for _, process in self.sentinels)
                raise RuntimeError(f"{failure} in {timeout}s:\n{logs}")
            time.sleep(0.1)

    def stop(self) -> None:
        for _, process in self.sentinels:
            process.stop()
        self.replica.stop()
        self.primary.stop()


def project_env(**extra: str | None) -> dict:
    # The caller chooses database, layer, backend and tuning, whatever the environment says.
    chosen = ("DATABASE_URL", "SQLITE_PATH", "REDIS_URL", "REDIS_LAYER", "PUSHGATEWAY_BACKEND")
    chosen += ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER")
    dropped = (*chosen, "PUSHGATEWAY_TUNING")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["DJANGO_SETTINGS_MODULE"] = "settings.dev"
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def options_env(options: dict, base: str = "settings.dev") -> dict[str, str]:
    """The environment of a server process of this project with these OPTIONS, e.g.
    `start_daphne(**options_env({"DRAIN_SECONDS": 2}))`, on the settings module `base`
    (tests/support/options_settings.py)."""
    return {
        "DJANGO_SETTINGS_MODULE": "tests.support.options_settings",
        "PUSHGATEWAY_TEST_OPTIONS": json.dumps(options),
        "PUSHGATEWAY_TEST_BASE_SETTINGS": base,
    }


#: The per-address join budget of a load generator: thousands of pages from one address (a
#: benchmark, a churn test) would otherwise measure the budget (docs/security.md).
ONE_HOST_OF_PAGES = {"ADDRESS_JOIN_BURST": 1_000_000, "ADDRESS_JOIN_RATE": 1_000_000}


def migrate(env: dict) -> None:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=project_env(**env),
        check=True,
    )


class SqliteDatabase:
    """A migrated SQLite file for processes of this project; `env` points them at it."""

    def __init__(self, path: Path):
        self.env = {"SQLITE_PATH": str(path)}
        migrate(self.env)


class PostgresDatabase:
    """A migrated database of its own (unique name) on the suite's PostgreSQL server.

    `env` points processes of this project at it; `drop()` removes it.
    """

    def __init__(self, prefix: str = "test_pushgateway_servers"):
        from settings.test import POSTGRES_URL

        self.server_url = POSTGRES_URL
        self.name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{self.name}"')
        self.url = urlsplit(POSTGRES_URL)._replace(path=f"/{self.name}").geturl()
        self.env = {"DATABASE_URL": self.url}
        try:
            migrate(self.env)
        except BaseException:
            self.drop()
            raise

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as connection:
            connection.execute(sql)

    def drop(self) -> None:
        # FORCE: a process that did not exit cleanly must not keep the database alive.
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Daphne:
    """The project under daphne (settings.dev), with or without Redis. Subclasses serve the
    same ASGI application under another server."""

    name = "daphne"

    def __init__(
        self,
        log_dir: Path,
        database: SqliteDatabase | PostgresDatabase,
        redis_url: str | None = None,
        **env_extra: str,
    ):
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws/pushgateway/"
        # A test server stops at once, as servers did before the drain (channels_app.drain),
        # unless the test gives OPTIONS of its own: the drain's tests do.
        env_extra = {**options_env({"DRAIN_SECONDS": 0}), **env_extra}
        self.env = project_env(**database.env, REDIS_URL=redis_url, **env_extra)
        self.start()

    def command(self) -> list[str]:
        args = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
        return [*args, "channels_app.asgi:application"]

    def start(self) -> None:
        name = f"{self.name}-{self.port}"
        self.process = Process(name, self.command(), self.log_dir, self.env)
        self.process.wait_for_port(self.port)

    def connect(self) -> ClientConnection:
        return connect(self.ws_url, origin=self.url, open_timeout=5)

    def stop(self) -> None:
        self.process.stop()


class Uvicorn(Daphne):
    """The same application under uvicorn, with the websockets library's sans-I/O protocol:
    it finds the ASGI 3 interface by itself, and its `send` waits for slow readers."""

    name = "uvicorn"

    def command(self) -> list[str]:
        args = [PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(self.port)]
        return [*args, "--ws", "websockets-sansio", "channels_app.asgi:application"]


def recv_json(ws: ClientConnection, timeout: float = 5) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def subscribe(ws: ClientConnection, channel: str, **fields) -> dict:
    """Subscribe; returns the `subscribed` frame (position, stale)."""
    ws.send(json.dumps({"type": "subscribe", "channel": channel, **fields}))
    frame = recv_json(ws)
    assert frame["type"] == "subscribed" and frame["channel"] == channel, frame
    return frame


def run_python(
    code: str, redis_url: str | None, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run `code` after django.setup() in a separate process of this project."""
    script = "import django; django.setup()\n" + code
    return subprocess.run(
        [PYTHON, "-c", script],
        cwd=ROOT,
        env=project_env(REDIS_URL=redis_url, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def manage(
    *args: str, redis_url: str | None, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=project_env(REDIS_URL=redis_url, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Pushpin:
    """A real Pushpin in front of an origin (configured by demo/pushpin.py).

    Ports are chosen at construction, so the origin can be given GRIP_URL before Pushpin
    starts; `start(origin_port)` then routes every request to that origin.
    """

    SIG_KEY = "pushgateway-test-sig-key"

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.port = free_port()
        self.publish_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grip_url = pushpin.grip_url(self.publish_port, self.SIG_KEY)
        self.process: Process | None = None

    def start(self, origin_port: int) -> None:
        root = self.log_dir / f"pushpin-{self.port}"
        config = pushpin.write_config(root, self.port, self.publish_port, self.SIG_KEY)
        self.process = Process(
            f"pushpin-{self.port}", pushpin.command(config, origin_port), self.log_dir
        )
        self.process.wait_for_port(self.port)
        self.process.wait_for_port(self.publish_port)
        self.wait_until_proxying()

    def wait_until_proxying(self, timeout: float = 20) -> None:
        """Listening is not ready: wait until a request makes it through to the origin."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/events.json", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Pushpin does not reach its origin:\n{self.process.log()}")
            time.sleep(0.1)

    def connect(self) -> ClientConnection:
        return connect(
            f"ws://127.0.0.1:{self.port}/ws/pushgateway/", origin=self.url, open_timeout=10
        )

    def stop(self) -> None:
        """Stop Pushpin and wait until its services have let go of their ports."""
        if self.process:
            self.process.stop()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(
                listening(port) for port in (self.port, self.publish_port)
            ):
                time.sleep(0.05)
