"""Fan-out benchmark: pushgateway's per-process hub, under daphne and under uvicorn, against
the practical limit of Python (a bare `websockets` server on redis-py, bench/bare_websockets.py)
and the bare Channels design (bench/baseline.py).

Every row is printed with its ratio to the bare `websockets` server of the same run. All
targets share one Redis and the project's publisher (the bare Channels design takes its
hints through group_send), one after the other on a freshly started server per scenario.
WebSocket clients are spread over several processes (bench/wsclient.py, a few microseconds
per frame); a publisher process sends hints carrying a timestamp, through
pushgateway.publish() (the bare websockets server reads them off Redis) and
layer.group_send() for bare Channels. Latency is publish timestamp to receipt by the client.
A delivery counts as lost when it has not arrived GRACE seconds after the last publish.

    .venv/bin/python -m bench.fanout                   # every scenario
    .venv/bin/python -m bench.fanout --only 100x20     # one; --seconds changes the length
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import bench_environment, child, read_json, report  # noqa: E402
from tests.support.servers import Process, free_port  # noqa: E402

GRACE = 5.0
HUB = "channels_app.asgi:application"
# name -> (server, application); the first is the baseline every ratio is to.
TARGETS = {
    "bare websockets": ("bare", None),
    "hub on daphne": ("daphne", HUB),
    "hub on uvicorn": ("uvicorn", HUB),
    "bare Channels": ("daphne", "bench.baseline:application"),
}
BASELINE = next(iter(TARGETS))


def server_command(server: str, app: str | None, port: int) -> list[str]:
    if server == "bare":
        return [sys.executable, "-m", "bench.bare_websockets", str(port)]
    if server == "uvicorn":
        args = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
        return [*args, "--log-level", "warning", "--ws", "websockets-sansio", app]
    return [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port), app]


@dataclass
class Scenario:
    name: str
    title: str
    sockets: int
    channels: int = 1
    rate: float = 0  # hints published per second, over all channels
    count: int = 0  # or: this many hints, all at once (a broadcast)
    memory_only: bool = False


SCENARIOS = [
    Scenario("100x20", "100 sockets x 20 msg/s, one channel", 100, rate=20),
    Scenario("200x50", "200 sockets x 50 msg/s, one channel", 200, rate=50),
    Scenario("1000x20", "1000 sockets x 20 msg/s, one channel", 1000, rate=20),
    Scenario("1000x100", "1000 sockets x 100 msg/s, one channel", 1000, rate=100),
    Scenario("1000ch", "1000 sockets on 1000 channels, 2000 hints/s", 1000, 1000, rate=2000),
    Scenario(
        "memory", "server memory per idle subscribed socket, 2000 sockets", 2000, memory_only=True
    ),
    Scenario("10k", "10,000 sockets on one server process, one broadcast", 10_000, count=1),
]


# ---------------------------------------------------------------- client worker process


async def open_socket(port: int, channel: str, on_text) -> asyncio.Transport:
    """A WebSocket subscribed to `channel`; `on_text` gets each text frame's payload."""
    from bench.wsclient import connect

    client = await connect("127.0.0.1", port, "/ws/pushgateway/", on_text)
    client.send_json({"type": "subscribe", "channel": channel})
    return client.transport


async def run_clients(
    port: int, first: int, sockets: int, channels: int, open_client=open_socket
) -> None:
    """`sockets` clients (numbered from `first`) opened with `open_client`, each on one of
    `channels`; reports when all are subscribed, and their latencies once told on stdin."""
    latencies: list[float] = []
    last_receipt = 0.0
    subscribed = 0

    def on_text(payload: bytes) -> None:
        nonlocal subscribed, last_receipt
        if payload.startswith(b'{"type":"message"'):
            last_receipt = time.time()
            latencies.append(last_receipt - json.loads(payload)["data"]["t"])
        elif payload.startswith(b'{"type":"subscribed"'):
            subscribed += 1

    gate = asyncio.Semaphore(50)  # daphne's listen backlog is 50

    async def open_one(i: int):
        async with gate:
            return await open_client(port, f"bench-{i % channels}", on_text)

    transports = await asyncio.gather(*(open_one(i) for i in range(first, first + sockets)))
    while subscribed < sockets:
        await asyncio.sleep(0.05)
    report({"ready": sockets})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    report({"latencies": latencies, "last": last_receipt})
    for transport in transports:
        transport.close()


# ---------------------------------------------------------------- publisher process


def publish_hub(channels: int, rate: float, count: int) -> None:
    import django

    django.setup()
    import pushgateway
    from pushgateway.backends import get_backend

    def send(i: int) -> None:
        pushgateway.publish(f"bench-{i % channels}", {"t": time.time(), "s": i})

    pushgateway.publish("bench-warmup")  # connects to Redis before the clock starts
    get_backend().flush(10)
    paced(send, rate, count)
    get_backend().flush(30)


def publish_baseline(channels: int, rate: float, count: int) -> None:
    import django

    django.setup()
    from channels.layers import get_channel_layer

    from bench.baseline import EVENT_TYPE
    from pushgateway import protocol
    from pushgateway.layer import group_name

    layer = get_channel_layer()
    loop = asyncio.new_event_loop()

    def send(i: int) -> None:
        channel = f"bench-{i % channels}"
        # The same frame as the hub's, position included, so only the designs differ.
        position = protocol.Position("baseline", i + 1)
        text = protocol.message_frame(channel, str(i), {"t": time.time(), "s": i}, position)
        event = {"type": EVENT_TYPE, "text": text}
        loop.run_until_complete(layer.group_send(group_name(channel), event))

    warmup = {"type": EVENT_TYPE, "text": "{}"}
    loop.run_until_complete(layer.group_send(group_name("bench-warmup"), warmup))
    paced(send, rate, count)


def paced(send, rate: float, count: int) -> None:
    start = time.time()
    for i in range(count):
        if rate:
            delay = start + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        send(i)
    report({"sent": count, "start": start, "end": time.time()})


# ---------------------------------------------------------------- orchestration


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def run_target(
    scenario: Scenario,
    target: str,
    env: dict,
    seconds: float,
    log_dir: Path,
    clients: str = "bench.fanout",
) -> dict:
    """One scenario against a fresh server of `target`, its clients run by the module
    `clients` (`python -m CLIENTS clients PORT FIRST COUNT CHANNELS`: WebSockets here)."""
    server, app = TARGETS[target]
    port = free_port()
    daphne = Process(
        f"{server}-{scenario.name}-{port}", server_command(server, app, port), log_dir, env
    )
    workers_n = max(1, min(4, math.ceil(scenario.sockets / 250)))

    def start_clients(first: int, count: int):
        args = [str(port), str(first), str(count), str(scenario.channels)]
        return child(clients, "clients", *args, env=env)

    try:
        daphne.wait_for_port(port)
        # One socket first: imports, the hub and the layer connection are not per-socket.
        warm = start_clients(0, 1)
        read_json(warm)
        time.sleep(0.5)
        rss_before = rss_kib(daphne.proc.pid)
        share = math.ceil(scenario.sockets / workers_n)
        workers = [
            start_clients(i * share, min(share, scenario.sockets - i * share))
            for i in range(workers_n)
        ]
        for worker in workers:
            read_json(worker)
        time.sleep(1.0)
        rss_after = rss_kib(daphne.proc.pid)
        result = {"kib_per_socket": (rss_after - rss_before) / scenario.sockets}
        kind = "publish-baseline" if target == "bare Channels" else "publish-hub"
        result.update(publish(scenario, kind, env, seconds))
        return collect(result, workers, warm)
    finally:
        daphne.stop()


def publish(scenario: Scenario, kind: str, env: dict, seconds: float) -> dict:
    """The scenario's hints, sent by a `kind` publisher process; what it says, and how many
    deliveries the clients should get."""
    if scenario.memory_only:
        return {"expected": 0}
    count = scenario.count or int(scenario.rate * seconds)
    args = [str(scenario.channels), str(scenario.rate), str(count)]
    publisher = child("bench.fanout", kind, *args, env=env)
    sent = read_json(publisher)
    publisher.wait(60)
    time.sleep(GRACE)
    return {**sent, "expected": count * scenario.sockets // scenario.channels}


def collect(result: dict, workers: list, warm) -> dict:
    """`result` with the latencies the client `workers` measured (not the `warm` one's)."""
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


def summarize(result: dict) -> dict:
    lat = sorted(x * 1000 for x in result["latencies"])
    n = len(lat)
    pick = (lambda q: lat[min(n - 1, int(q * n))]) if n else (lambda q: math.nan)
    span = (result["last"] - result["start"]) if n else math.nan
    return {
        "p50": pick(0.50),
        "p99": pick(0.99),
        "max": lat[-1] if n else math.nan,
        "rate": n / span if n and span > 0 else math.nan,
        "loss": 1 - n / result["expected"] if result["expected"] else math.nan,
        "kib": result["kib_per_socket"],
        "mean": statistics.fmean(lat) if n else math.nan,
    }


def bar(value: float, top: float, width: int = 24) -> str:
    if not (value > 0 and top > 0) or math.isnan(value):
        return ""
    return "#" * max(1, round(width * value / top))


def print_table(scenario: Scenario, rows: dict[str, dict]) -> None:
    print(f"\n== {scenario.title} ==")
    if scenario.memory_only:
        top = max(r["kib"] for r in rows.values())
        print(f"{'':18}{'KiB/socket':>12}")
        for name, r in rows.items():
            print(f"{name:18}{r['kib']:12.1f}{ratio(r, rows, 'kib')}  {bar(r['kib'], top)}")
        return
    top_rate = max(r["rate"] for r in rows.values() if not math.isnan(r["rate"]))
    top_p99 = max(r["p99"] for r in rows.values() if not math.isnan(r["p99"]))
    print(
        f"{'':18}{'p50 ms':>16}{'p99 ms':>16}{'max ms':>9}{'deliv/s':>17}{'loss':>8}"
        f"  {'delivered/s':24}  p99"
    )
    for name, r in rows.items():
        print(
            f"{name:18}{r['p50']:9.1f}{ratio(r, rows, 'p50')}{r['p99']:9.1f}"
            f"{ratio(r, rows, 'p99')}{r['max']:9.1f}{r['rate']:10,.0f}{ratio(r, rows, 'rate')}"
            f"{r['loss']:8.2%}  {bar(r['rate'], top_rate):24}  {bar(r['p99'], top_p99)}"
        )


def ratio(row: dict, rows: dict[str, dict], key: str) -> str:
    """`row[key]` as a multiple of the baseline's, 7 characters wide."""
    base = rows.get(BASELINE, {}).get(key, math.nan)
    value = row[key] / base if base and not math.isnan(base) else math.nan
    return f" {value:5.2f}x" if not math.isnan(value) else "       "


def main() -> None:
    commands = {"clients", "publish-hub", "publish-baseline"}
    if len(sys.argv) > 1 and sys.argv[1] in commands:
        kind, *args = sys.argv[1:]
        if kind == "clients":
            port, first, sockets, channels = map(int, args)
            asyncio.run(run_clients(port, first, sockets, channels))
        else:
            channels, rate, count = int(args[0]), float(args[1]), int(args[2])
            (publish_hub if kind == "publish-hub" else publish_baseline)(channels, rate, count)
        return

    parser = scenario_parser(__doc__, SCENARIOS)
    parser.add_argument(
        "--targets", nargs="*", choices=list(TARGETS), help="besides the baseline (default: all)"
    )
    options = parser.parse_args()

    def rows(scenario: Scenario, env: dict, log_dir: Path) -> dict[str, dict]:
        chosen = [n for n in TARGETS if not options.targets or n in (BASELINE, *options.targets)]
        return {
            n: summarize(run_target(scenario, n, env, options.seconds, log_dir)) for n in chosen
        }

    run_scenarios("bench.fanout", SCENARIOS, options, rows)


def scenario_parser(doc: str, scenarios: list[Scenario]) -> argparse.ArgumentParser:
    """The options of a benchmark of `scenarios` (this one's, bench.streams'): --only,
    --seconds, --json."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=[s.name for s in scenarios])
    parser.add_argument("--seconds", type=float, default=10.0, help="publishing time per run")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    return parser


def run_scenarios(module: str, scenarios: list[Scenario], options, rows) -> None:
    """Each of `scenarios` that `options.only` keeps (all by default), its rows
    (`rows(scenario, env, log_dir)`, one per target) printed as a table; with `--json`,
    all of them written there too."""
    everything = {}
    with bench_environment(module) as (log_dir, _, env):
        for scenario in scenarios:
            if options.only and scenario.name not in options.only:
                continue
            everything[scenario.name] = rows(scenario, env, log_dir)
            print_table(scenario, everything[scenario.name])
    if options.json:
        options.json.write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
