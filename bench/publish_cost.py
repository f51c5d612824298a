"""What publishing costs a save: a registered model against the same model unregistered.

Each save runs in its own transaction (so its hints are published at commit) on the
demo's Event model, SQLite, with the Channels backend on a real Redis. The same
measurement against a "Redis" that accepts connections and never answers shows that the
save path never waits on the network: hints queue and are dropped when the queue is full.

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import RedisServer, SqliteDatabase  # noqa: E402

ROUNDS = 20
SAVES_PER_ROUND = 250


def measure() -> None:
    """In a child process: median save time, registered vs unregistered, interleaved."""
    import django

    django.setup()
    from django.db import transaction

    import pushgateway
    from demo.models import Event
    from pushgateway.backends import get_backend

    event = Event.objects.create(title="bench")

    def saves(n: int) -> list[float]:
        times = []
        for i in range(n):
            started = time.perf_counter()
            with transaction.atomic():
                event.title = f"bench {i}"
                event.save()
            times.append(time.perf_counter() - started)
        return times

    saves(200)  # warm up: connections, caches, the sender thread
    registered, unregistered = [], []
    for _ in range(ROUNDS):
        registered += saves(SAVES_PER_ROUND)
        pushgateway.unregister(Event)
        unregistered += saves(SAVES_PER_ROUND)
        pushgateway.register(Event, channels=lambda e: ["events"])
    stats = dict(get_backend().stats)
    print(
        json.dumps(
            {
                "registered_us": statistics.median(registered) * 1e6,
                "unregistered_us": statistics.median(unregistered) * 1e6,
                "registered_max_ms": max(registered) * 1e3,
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


def run(label: str, database: SqliteDatabase, redis_url: str) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings.dev",
        **database.env,
        "REDIS_URL": redis_url,
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bench.publish_cost", "measure"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode:
        raise RuntimeError(f"{label}: {result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:] == ["measure"]:
        measure()
        return
    work = Path(tempfile.mkdtemp(prefix="pushgateway-bench-"))
    redis = RedisServer(work)
    port, stop = blackhole()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores")
    print("# reproduce: python -m bench.publish_cost")
    print(
        f"# median of {ROUNDS * SAVES_PER_ROUND} saves each, one transaction per save, SQLite file"
    )
    try:
        rows = {
            "Redis up": run("up", SqliteDatabase(work / "up.sqlite3"), redis.url),
            "Redis silent": run(
                "silent", SqliteDatabase(work / "silent.sqlite3"), f"redis://127.0.0.1:{port}/0"
            ),
        }
    finally:
        stop.set()
        redis.stop()
    print(f"\n{'':14}{'unregistered':>14}{'registered':>12}{'ratio':>8}{'max ms':>8}  hints")
    for name, r in rows.items():
        ratio = r["registered_us"] / r["unregistered_us"]
        stats = ", ".join(f"{k} {v}" for k, v in sorted(r["stats"].items()))
        print(
            f"{name:14}{r['unregistered_us']:12.0f}us{r['registered_us']:10.0f}us{ratio:8.2f}"
            f"{r['registered_max_ms']:8.1f}  {stats}  {'#' * round(20 * ratio)}"
        )


if __name__ == "__main__":
    main()
