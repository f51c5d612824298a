"""Fan-out over streams against WebSockets: the same daphne, the same hub, the same hints.

Each scenario runs twice on a freshly started daphne (channels_app.asgi, Redis pub/sub
layer): once with WebSocket clients (bench/fanout.py's), once with stream clients (a POST to
/pushgateway/stream/ read as Server-Sent Events over chunked HTTP/1.1), spread over several
processes. A publisher process sends hints carrying a timestamp through pushgateway.publish().
Latency is publish timestamp to receipt by the client; a delivery counts as lost when it has
not arrived GRACE seconds after the last publish. Memory is the server's RSS growth per
subscribed connection.

    .venv/bin/python -m bench.streams                  # every scenario
    .venv/bin/python -m bench.streams --only 200x50    # one; --seconds changes the length
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import bench_environment, child, read_json  # noqa: E402
from bench.fanout import (  # noqa: E402
    GRACE,
    Scenario,
    print_table,
    rss_kib,
    run_clients,
    summarize,
)
from pushgateway.constants import STREAM_PATH  # noqa: E402
from tests.support.servers import Process, free_port  # noqa: E402

SCENARIOS = [
    Scenario("200x50", "200 connections x 50 msg/s, one channel", 200, rate=50),
    Scenario("1000x20", "1000 connections x 20 msg/s, one channel", 1000, rate=20),
    Scenario("1000ch", "1000 connections on 1000 channels, 2000 hints/s", 1000, 1000, rate=2000),
    Scenario(
        "memory", "server memory per idle subscribed connection, 2000", 2000, memory_only=True
    ),
]
CLIENTS = {"WebSocket": "bench.fanout", "stream (SSE)": "bench.streams"}


# ---------------------------------------------------------------- stream client process


class StreamClient(asyncio.Protocol):
    """One stream: the POST, then chunked Server-Sent Events, each `message` timed."""

    def __init__(self, on_event) -> None:
        self.on_event = on_event
        self.raw = b""  # bytes not yet taken out of the chunked encoding
        self.text = b""  # the decoded body not yet split into events
        self.head = True

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if self.head:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self.raw, self.head = self.raw[end + 4 :], False
        while True:  # chunks: SIZE\r\nDATA\r\n
            line = self.raw.find(b"\r\n")
            if line < 0:
                break
            size = int(self.raw[:line], 16)
            if len(self.raw) < line + 2 + size + 2:
                break
            self.text += self.raw[line + 2 : line + 2 + size]
            self.raw = self.raw[line + 2 + size + 2 :]
        *events, self.text = self.text.split(b"\n\n")
        for event in events:
            if event.startswith(b"data: "):
                self.on_event(event[6:])


async def open_stream(port: int, channel: str, on_event) -> asyncio.Transport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(lambda: StreamClient(on_event), "127.0.0.1", port)
    body = json.dumps({"frames": [{"type": "subscribe", "channel": channel}]}).encode()
    transport.write(
        f"POST {STREAM_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Origin: http://127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return transport


# ---------------------------------------------------------------- orchestration


def start_clients(module: str, port: int, first: int, count: int, channels: int, env: dict):
    return child(module, "clients", str(port), str(first), str(count), str(channels), env=env)


def run_target(scenario: Scenario, module: str, env: dict, seconds: float, log_dir: Path):
    """One scenario with the clients of `module` on a fresh daphne (as bench.fanout)."""
    port = free_port()
    app = "channels_app.asgi:application"
    args = [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port), app]
    daphne = Process(f"daphne-{scenario.name}-{port}", args, log_dir, env)
    workers_n = max(1, min(4, math.ceil(scenario.sockets / 250)))
    try:
        daphne.wait_for_port(port)
        warm = start_clients(module, port, 0, 1, scenario.channels, env)
        read_json(warm)
        time.sleep(0.5)
        rss_before = rss_kib(daphne.proc.pid)
        share = math.ceil(scenario.sockets / workers_n)
        workers = [
            start_clients(
                module, port, i * share, min(share, scenario.sockets - i * share),
                scenario.channels, env,
            )
            for i in range(workers_n)
        ]  # fmt: skip
        for worker in workers:
            read_json(worker)
        time.sleep(1.0)
        result = {"kib_per_socket": (rss_kib(daphne.proc.pid) - rss_before) / scenario.sockets}
        result.update(publish(scenario, env, seconds))
        return collect(result, workers, warm)
    finally:
        daphne.stop()


def publish(scenario: Scenario, env: dict, seconds: float) -> dict:
    if scenario.memory_only:
        return {"expected": 0}
    count = scenario.count or int(scenario.rate * seconds)
    args = [str(scenario.channels), str(scenario.rate), str(count)]
    publisher = child("bench.fanout", "publish-hub", *args, env=env)
    sent = read_json(publisher)
    publisher.wait(60)
    time.sleep(GRACE)
    return {**sent, "expected": count * scenario.sockets // scenario.channels}


def collect(result: dict, workers: list, warm) -> dict:
    latencies, last = [], 0.0
    for worker in [*workers, warm]:
        worker.stdin.write("stop\n")
        worker.stdin.flush()
        received = read_json(worker)
        if worker is not warm:
            latencies += received["latencies"]
            last = max(last, received["last"])
        worker.wait(30)
    return {**result, "latencies": latencies, "last": last}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "clients":
        port, first, count, channels = map(int, sys.argv[2:])
        asyncio.run(run_clients(port, first, count, channels, open_stream))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--seconds", type=float, default=10.0, help="publishing time per run")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    options = parser.parse_args()

    everything = {}
    with bench_environment("bench.streams") as (log_dir, _, env):
        for scenario in SCENARIOS:
            if options.only and scenario.name not in options.only:
                continue
            rows = {}
            for name, module in CLIENTS.items():
                result = run_target(scenario, module, env, options.seconds, log_dir)
                rows[name] = summarize(result)
            print_table(scenario, rows)
            everything[scenario.name] = rows
    if options.json:
        options.json.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
