"""System calls and server CPU per delivered hint, with the frames knob off and on.

One server process (daphne or uvicorn) holds SOCKETS subscribed sockets on one channel
(bench.fanout's client workers); the project's publisher sends BROADCASTS hints to them,
twice: once to read the server's CPU time from /proc, once under ``strace -c -f`` to count
its system calls. "frames off" is ``PUSHGATEWAY_TUNING=gc,autobahn`` (every hint through
ASGI `send`, the server framing it for every socket), "frames on" is the default (the
hub's frame written to each transport: channels_app.frames, pushgateway.adapters).

    .venv/bin/python -m bench.syscalls --server daphne --sockets 1000 --broadcasts 20
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.capacity import cpu_seconds, server_command  # noqa: E402
from bench.common import bench_environment, child, read_json  # noqa: E402
from tests.support.servers import Process, free_port  # noqa: E402

KNOBS = {"frames off": "gc,autobahn", "frames on": "all"}
CALLS = ("sendto", "write", "writev", "epoll_ctl", "epoll_wait")
STRACE_LINE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def publish(env: dict, broadcasts: int, rate: float) -> None:
    publisher = child("bench.fanout", "publish-hub", "1", str(rate), str(broadcasts), env=env)
    read_json(publisher)
    publisher.wait(60)
    time.sleep(1.0)  # the last broadcast written


def strace_counts(pid: int, run) -> dict[str, int]:
    """System calls of `pid` (all its threads) while `run()` runs, by name."""
    output = Path(f"/tmp/strace-{pid}-{time.time():.0f}.txt")
    strace = subprocess.Popen(["strace", "-c", "-f", "-q", "-p", str(pid), "-o", str(output)])
    time.sleep(1.0)  # attached
    try:
        run()
    finally:
        strace.send_signal(signal.SIGINT)
        strace.wait(30)
    counts = {}
    for line in output.read_text().splitlines():
        match = STRACE_LINE.match(line)
        if match:
            counts[match[2]] = int(match[1])
    return counts


def measure(server: str, tuning: str, options, env: dict, log_dir: Path) -> dict:
    port = free_port()
    args, extra = server_command(server, port)
    if server == "daphne":
        extra = {}
    proc = Process(
        f"{server}-{port}", args, log_dir, {**env, **extra, "PUSHGATEWAY_TUNING": tuning}
    )
    try:
        proc.wait_for_port(port, timeout=60)
        clients = child(
            "bench.fanout", "clients", str(port), "0", str(options.sockets), "1", env=env
        )
        read_json(clients)
        time.sleep(1.0)
        deliveries = options.sockets * options.broadcasts
        cpu0 = cpu_seconds(proc.proc.pid)
        publish(env, options.broadcasts, options.rate)
        result = {"us_per_delivery": (cpu_seconds(proc.proc.pid) - cpu0) / deliveries * 1e6}
        if shutil.which("strace"):
            counts = strace_counts(
                proc.proc.pid, lambda: publish(env, options.broadcasts, options.rate)
            )
            result.update({call: counts.get(call, 0) / deliveries for call in CALLS})
        clients.stdin.write("stop\n")
        clients.stdin.flush()
        received = read_json(clients)
        result["received"] = len(received["latencies"])
        result["expected"] = 2 * deliveries
        clients.wait(30)
        return result
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--rate", type=float, default=5.0, help="broadcasts per second")
    options = parser.parse_args()
    with bench_environment("bench.syscalls") as (log_dir, _, env):
        rows = {
            name: measure(options.server, knob, options, env, log_dir)
            for name, knob in KNOBS.items()
        }
    print(f"\n== {options.server}: {options.sockets} sockets x {options.broadcasts} broadcasts ==")
    print(f"{'per delivery':14}{'CPU us':>9}" + "".join(f"{c:>12}" for c in CALLS) + "    received")
    for name, r in rows.items():
        cells = "".join(f"{r.get(c, math.nan):12.3f}" for c in CALLS)
        print(f"{name:14}{r['us_per_delivery']:9.1f}{cells}    {r['received']}/{r['expected']}")


if __name__ == "__main__":
    main()
