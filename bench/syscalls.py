"""System calls and server CPU per delivered hint: the bare `websockets` server, and the
project with the frames knob off and on.

One server process (the bare server, daphne or uvicorn) holds SOCKETS subscribed sockets on
one channel (bench.fanout's client workers); the project's publisher sends BROADCASTS hints
to them, twice: once to read the server's CPU time from /proc (user and system: the kernel's
part of a loopback `send()` includes delivering it to the client's socket), once under
``strace -c -f`` to count its system calls. "bare websockets" is bench/bare_websockets.py,
the baseline: its system time is about what the kernel takes for one `send()` per socket,
which no server writing one frame per socket avoids. "frames off" is
``PUSHGATEWAY_TUNING=gc,autobahn`` (every hint through ASGI `send`, the server framing it
for every socket), "frames on" is the default (the hub's frame written to each transport:
channels_app.frames, pushgateway.adapters).

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

from bench.capacity import cpu_times, server_command  # noqa: E402
from bench.common import bench_environment, child, read_json  # noqa: E402
from tests.support.servers import Process, free_port  # noqa: E402

# Row -> PUSHGATEWAY_TUNING of the project's server; None: the bare server instead.
KNOBS = {"bare websockets": None, "frames off": "gc,autobahn", "frames on": "all"}
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


def measure(server: str, tuning: str | None, options, env: dict, log_dir: Path) -> dict:
    port = free_port()
    server = server if tuning else "bare"
    args, extra = server_command(server, port)
    if server == "daphne":
        extra = {}
    env = {**env, **extra, **({"PUSHGATEWAY_TUNING": tuning} if tuning else {})}
    proc = Process(f"{server}-{port}", args, log_dir, env)
    try:
        proc.wait_for_port(port, timeout=60)
        clients = child(
            "bench.fanout", "clients", str(port), "0", str(options.sockets), "1", env=env
        )
        read_json(clients)
        time.sleep(1.0)
        deliveries = options.sockets * options.broadcasts
        user0, system0 = cpu_times(proc.proc.pid)
        publish(env, options.broadcasts, options.rate)
        user1, system1 = cpu_times(proc.proc.pid)
        result = {
            "user": (user1 - user0) / deliveries * 1e6,
            "system": (system1 - system0) / deliveries * 1e6,
        }
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
    head = f"{'per delivery':16}{'CPU us':>9}{'user':>7}{'system':>7}{'ratio':>7}"
    print(head + "".join(f"{c:>11}" for c in CALLS) + "    received")
    base = sum(rows["bare websockets"][k] for k in ("user", "system"))
    for name, r in rows.items():
        cpu = r["user"] + r["system"]
        cells = f"{cpu:9.1f}{r['user']:7.1f}{r['system']:7.1f}{cpu / base:6.2f}x"
        cells += "".join(f"{r.get(c, math.nan):11.3f}" for c in CALLS)
        print(f"{name:16}{cells}    {r['received']}/{r['expected']}")


if __name__ == "__main__":
    main()
