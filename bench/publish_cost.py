"""What publishing costs a save: a registered model against the same model unregistered.

Each save runs in its own transaction (so its hints are published at commit) on the
demo's Event model, with the Channels backend on a real Redis, once on a SQLite file and
once on PostgreSQL (a database of its own on the tests' server, TEST_POSTGRES_URL), every
hint sent (coalescing off), and once with coalescing on as it is by default. The same
measurement against a "Redis" that accepts connections and never answers shows that the
save path never waits on the network: hints queue and are dropped when the queue is full.
Redis's own time in the publishing scripts is reported per hint, and what the scripts'
incarnation check (two INFO calls, positions.INCARNATION_LUA) adds to each script.

    .venv/bin/python -m bench.publish_cost
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import (  # noqa: E402
    PostgresDatabase,
    RedisServer,
    SqliteDatabase,
    project_env,
)

ROUNDS = 20
SAVES_PER_ROUND = 250


def measure(coalesce: float) -> None:
    """In a child process: median save time, registered vs unregistered, interleaved."""
    import django

    django.setup()
    from django.conf import settings
    from django.db import transaction

    options = {**settings.PUSHGATEWAY.get("OPTIONS", {}), "COALESCE": coalesce}
    settings.PUSHGATEWAY = {**settings.PUSHGATEWAY, "OPTIONS": options}

    import pushgateway
    from demo.models import Event
    from pushgateway.backends import get_backend

    event = Event.objects.create(title="bench")

    def saves(n: int, times: list[float], cpu: list[float]) -> None:
        """Wall time of each save, and the CPU of the saving thread alone."""
        for i in range(n):
            started, started_cpu = time.perf_counter(), time.thread_time()
            with transaction.atomic():
                event.title = f"bench {i}"
                event.save()
            times.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)

    saves(200, [], [])  # warm up: connections, caches, the sender thread
    registered, unregistered, registered_cpu, unregistered_cpu = [], [], [], []
    for _ in range(ROUNDS):
        saves(SAVES_PER_ROUND, registered, registered_cpu)
        pushgateway.unregister(Event)
        saves(SAVES_PER_ROUND, unregistered, unregistered_cpu)
        pushgateway.register(Event, channels=lambda e: ["events"])
    stats = dict(get_backend().stats)
    median = statistics.median
    print(
        json.dumps(
            {
                "registered_us": median(registered) * 1e6,
                "unregistered_us": median(unregistered) * 1e6,
                "registered_max_ms": max(registered) * 1e3,
                "unregistered_max_ms": max(unregistered) * 1e3,
                "request_cpu_us": (median(registered_cpu) - median(unregistered_cpu)) * 1e6,
                "stats": stats,
            }
        )
    )


def blackhole() -> tuple[int, threading.Event]:
    """A TCP server that accepts connections and never reads or answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(100)
    held, stop = [], threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1], stop


def script_time(redis: RedisServer) -> tuple[float, int]:
    """Microseconds Redis spent in publishing scripts (EVALSHA, one per batch) since its
    stats were reset, and how many it ran; each advances its batch's positions (checking the
    Redis incarnation once: two INFO calls) and publishes their frames."""
    with redis.client() as client:
        stats = client.info("commandstats").get("cmdstat_evalsha", {"usec": 0, "calls": 0})
    return stats["usec"], stats["calls"]


def incarnation_cost(redis: RedisServer, calls: int = 3000) -> float:
    """Microseconds of Redis time the incarnation check (positions.INCARNATION_LUA: two INFO
    calls) adds to a script: a script doing only it against an empty one."""
    from pushgateway.positions import INCARNATION_LUA

    per_call = []
    with redis.client() as client:
        for text in (INCARNATION_LUA + "return incarnation()", "return 1"):
            script = client.register_script(text)
            script()
            client.config_resetstat()
            for _ in range(calls):
                script()
            per_call.append(client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])
    return per_call[0] - per_call[1]


def run(
    label: str,
    database: SqliteDatabase | PostgresDatabase,
    redis_url: str,
    coalesce: float = 0,
    redis: RedisServer | None = None,
) -> dict:
    if redis is not None:
        with redis.client() as client:
            client.config_resetstat()
    result = subprocess.run(
        [sys.executable, "-m", "bench.publish_cost", "measure", str(coalesce)],
        cwd=ROOT,
        env=project_env(**database.env, REDIS_URL=redis_url, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode:
        raise RuntimeError(f"{label}: {result.stderr}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return {**measured, "scripts": script_time(redis) if redis else None}


def postgres_version(database: PostgresDatabase) -> str:
    import psycopg

    with psycopg.connect(database.url) as connection:
        return connection.info.parameter_status("server_version")


def main() -> None:
    if sys.argv[1:2] == ["measure"]:
        measure(float(sys.argv[2]))
        return
    work = Path(tempfile.mkdtemp(prefix="pushgateway-bench-"))
    redis = RedisServer(work)
    port, stop = blackhole()
    silent = f"redis://127.0.0.1:{port}/0"
    postgres: list[PostgresDatabase] = []
    try:
        for _ in range(3):  # one per run, appended at once so that each is dropped
            postgres.append(PostgresDatabase("bench_pushgateway"))
        server = urlsplit(postgres[0].url)
        print(f"# {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores")
        print("# reproduce: python -m bench.publish_cost")
        print(
            f"# median of {ROUNDS * SAVES_PER_ROUND} saves each, one transaction per save; SQLite "
            f"file; PostgreSQL {postgres_version(postgres[0])} on {server.hostname}:{server.port}"
        )
        # Every hint sent (COALESCE 0): the cost of publishing itself. One object saved
        # again and again is what coalescing (on by default) is for: the last row.
        rows = {
            "SQLite, Redis up": run("up", SqliteDatabase(work / "up.sqlite3"), redis.url, 0, redis),
            "SQLite, Redis silent": run("silent", SqliteDatabase(work / "silent.sqlite3"), silent),
            "PostgreSQL, Redis up": run("pg up", postgres[0], redis.url, 0, redis),
            "PostgreSQL, Redis silent": run("pg silent", postgres[1], silent),
            "PostgreSQL, coalesced": run("pg coalesced", postgres[2], redis.url, 0.5, redis),
        }
        check = incarnation_cost(redis)
    finally:
        stop.set()
        redis.stop()
        for database in postgres:
            database.drop()
    # "+cpu": what publishing adds to the saving thread's own CPU (median against median).
    # "max ms": the slowest save of each kind; a stall of the database or the disk shows in
    # both, one of publishing only in the registered one. "redis/hint": Redis's own time in
    # the publishing scripts per hint sent, and hints per script ("/sc"; not the save's time).
    header = f"{'unregistered':>14}{'registered':>12}{'ratio':>8}{'+cpu':>8}{'max ms':>14}"
    print(f"\n{'':26}{header}{'redis/hint':>18}  hints")
    for name, r in rows.items():
        ratio = r["registered_us"] / r["unregistered_us"]
        stats = ", ".join(f"{k} {v}" for k, v in sorted(r["stats"].items()))
        script = f"{'-':>18}"
        if r["scripts"] and r["scripts"][1]:
            (usec, calls), sent = r["scripts"], r["stats"].get("sent", 0)
            script = f"{usec / max(sent, 1):7.1f}us ({sent / calls:4.1f}/sc)"
        print(
            f"{name:26}{r['unregistered_us']:12.0f}us{r['registered_us']:10.0f}us{ratio:8.2f}"
            f"{r['request_cpu_us']:6.0f}us{r['unregistered_max_ms']:7.1f}/{r['registered_max_ms']:<6.1f}"
            f"{script}  {stats}"
            f"  {'#' * round(20 * ratio)}"
        )
    print(f"\nincarnation check (two INFO calls): {check:.1f}us of Redis time per script")


if __name__ == "__main__":
    main()
