"""Reconnect storm: daphne restarts under 10,000 pages; how many refetch, how soon all are back.

10,000 sockets, each subscribed to a channel of its own, on one daphne with the Redis pub/sub
layer. daphne is stopped, 1 % of the channels get a hint while it is down, and it is started
again. Every client reconnects with the browser module's backoff (equal jitter, 1 s doubling)
and subscribes again:
- "positions" (protocol 2): with the last position it knows (`since`); it refetches only
  where `subscribed` says stale;
- "resync all" (the baseline, protocol 1 behaviour): without one; every page refetches.
The table gives the time from daphne's restart until every socket is subscribed again, and
the refetches (`resync` callbacks) against the channels that changed.

    .venv/bin/python -m bench.resync                  # 10,000 sockets
    .venv/bin/python -m bench.resync --sockets 2000   # a shorter run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from pathlib import Path

from bench.common import bench_environment, child, read_json, report
from tests.support.servers import Process, free_port, run_python

MODES = {"positions": True, "resync all": False}
PER_WORKER = 2500


# ---------------------------------------------------------------- client worker process


class Page:
    """One page's socket: subscribes to its channel, reconnects like the browser module."""

    def __init__(self, port: int, channel: str, send_since: bool, stats: dict) -> None:
        self.port = port
        self.channel = channel
        self.send_since = send_since
        self.stats = stats
        self.position = None
        self.socket = None
        self.subscribed = asyncio.get_running_loop().create_future()

    def on_text(self, payload: bytes) -> None:
        frame = json.loads(payload)
        if frame["type"] == "subscribed" and not self.subscribed.done():
            self.stats["resyncs"] += frame["stale"]  # the page would refetch
            self.position = frame["position"]
            self.subscribed.set_result(time.time())
        elif frame["type"] == "error":  # unavailable: ask again later, as the browser does
            self.stats["errors"] += 1
            asyncio.get_running_loop().call_later(5, self.subscribe, self.socket)

    def subscribe(self, socket) -> None:
        if socket is not self.socket or socket.closed.done():
            return
        frame = {"type": "subscribe", "channel": self.channel}
        if self.send_since and self.position is not None:
            frame["since"] = self.position
        socket.send_json(frame)

    async def run(self) -> None:
        from bench.wsclient import connect

        attempt = 0
        while True:
            try:
                socket = await connect("127.0.0.1", self.port, "/ws/pushgateway/", self.on_text)
            except OSError:
                cap = min(30.0, 2.0**attempt)
                attempt += 1
                await asyncio.sleep(cap / 2 + random.random() * cap / 2)
                continue
            attempt = 0
            self.socket = socket
            self.subscribe(socket)
            await socket.closed
            self.subscribed = asyncio.get_running_loop().create_future()
            await asyncio.sleep(random.random())  # the browser's first retry: 0.5-1 s


async def run_clients(port: int, first: int, count: int, send_since: bool) -> None:
    stats = {"resyncs": 0, "errors": 0}
    pages = [Page(port, f"storm-{n}", send_since, stats) for n in range(first, first + count)]
    tasks = []
    for page in pages:
        tasks.append(asyncio.create_task(page.run()))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0.05)  # do not connect everything in one burst
    await asyncio.gather(*(p.subscribed for p in pages))
    report({"ready": True})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "restarted"
    stats["resyncs"] = 0
    # Wait for every page to lose its socket and subscribe again.
    await asyncio.sleep(0.2)
    done = await asyncio.gather(*(p.subscribed for p in pages))
    report({"resyncs": stats["resyncs"], "errors": stats["errors"], "times": done})
    for task in tasks:
        task.cancel()


# ---------------------------------------------------------------- orchestration


def run_mode(sockets: int, send_since: bool, env: dict, log_dir: Path, redis_url: str) -> dict:
    port = free_port()
    # A listen backlog for a storm: with Twisted's default of 50 the kernel drops SYNs and
    # retries them after 1, 3, 7, 15 s..., which is what the tail would measure.
    endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog=4096"
    args = [sys.executable, "-m", "daphne", "-v", "0", "-e", endpoint]
    args.append("channels_app.asgi:application")

    def start_daphne() -> Process:
        process = Process(f"daphne-resync-{port}", args, log_dir, env)
        process.wait_for_port(port, timeout=60)
        return process

    daphne = start_daphne()
    workers = []
    try:
        count = math.ceil(sockets / PER_WORKER)
        for i in range(count):
            first = i * PER_WORKER
            share = min(PER_WORKER, sockets - first)
            flag = "since" if send_since else "none"
            workers.append(
                child("bench.resync", "clients", str(port), str(first), str(share), flag, env=env)
            )
        for worker in workers:
            read_json(worker)
        daphne.stop()
        changed = [f"storm-{n}" for n in range(0, sockets, 100)]  # 1 %
        code = f"import pushgateway\nfor c in {changed!r}: pushgateway.publish(c)"
        published = run_python(code, redis_url, env={"SQLITE_PATH": env["SQLITE_PATH"]})
        assert published.returncode == 0, published.stderr
        for worker in workers:
            worker.stdin.write("restarted\n")
            worker.stdin.flush()
        restarted = time.time()
        daphne = start_daphne()
        results = [read_json(worker) for worker in workers]
        back = sorted(t - restarted for r in results for t in r["times"])
        return {
            "p50": back[len(back) // 2],
            "p99": back[len(back) * 99 // 100],
            "seconds": back[-1],
            "resyncs": sum(r["resyncs"] for r in results),
            "unavailable": sum(r["errors"] for r in results),
            "changed": len(changed),
        }
    finally:
        for worker in workers:
            worker.kill()
        daphne.stop()


def print_table(sockets: int, rows: dict[str, dict]) -> None:
    print(f"\n== {sockets:,} sockets on {sockets:,} channels, daphne restarted, 1 % changed ==")
    header = ("p50 back s", "p99 back s", "all back s", "refetches", "changed", "needless")
    print(f"{'':14}" + "".join(f"{h:>12}" for h in header))
    for name, r in rows.items():
        times = (r["p50"], r["p99"], r["seconds"])
        counts = (r["resyncs"], r["changed"], r["resyncs"] - r["changed"])
        print(
            f"{name:14}"
            + "".join(f"{t:12.1f}" for t in times)
            + "".join(f"{c:12,}" for c in counts)
        )
    base, ours = rows["resync all"], rows["positions"]
    print(
        f"positions against resync all: {ours['resyncs'] / base['resyncs']:.3f}x the refetches, "
        f"{ours['p99'] / base['p99']:.2f}x the time until 99 % are back; "
        f"{sum(r['unavailable'] for r in rows.values())} subscribes refused as unavailable"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "clients":
        port, first, count = map(int, sys.argv[2:5])
        asyncio.run(run_clients(port, first, count, sys.argv[5] == "since"))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=10_000)
    options = parser.parse_args()

    with bench_environment("bench.resync") as (log_dir, redis, env):
        rows = {
            name: run_mode(options.sockets, since, env, log_dir, redis.url)
            for name, since in MODES.items()
        }
    print_table(options.sockets, rows)


if __name__ == "__main__":
    main()
