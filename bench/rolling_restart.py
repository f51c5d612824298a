"""Rolling restart: gunicorn replaces its two uvicorn workers (`kill -HUP`) under N pages.

N sockets, each subscribed to a channel of its own, on `gunicorn -k
uvicorn.workers.UvicornWorker -w 2` with the Redis pub/sub layer, while a publisher sends
hints on random channels throughout. The master is sent SIGHUP: it starts two new workers and
sends SIGTERM to the old ones. Every page reconnects as the browser module does and
subscribes with the position it knows. Modes:

- "drain": the old workers drain (OPTIONS["DRAIN_SECONDS"]): they stop accepting and close
  their sockets with 4012 spread over the window; pages come back within restartDelay;
- "no drain": DRAIN_SECONDS 0, uvicorn's own shutdown (1012 to every socket at once); the
  browser module takes 1012 as a restart too;
- "before": no drain and the browser module as it was before (every close up the backoff
  ladder: the first retry after 0.5-1 s).

For each: peak connects per second, the time from the HUP until every page is subscribed
again, and refetches (`subscribed` frames with stale true, which the page answers with a
resync; plus gaps in the hints a socket received), against the pages whose channel changed
while they were away. tests/system/test_rolling_restart.py runs the "drain" mode at 4,000
sockets with assertions.

    .venv/bin/python -m bench.rolling_restart                   # 4,000 sockets, every mode
    .venv/bin/python -m bench.rolling_restart --sockets 10000 --modes drain before
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import resource
import signal
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path

from bench.common import bench_environment, child, read_json, report
from pushgateway.constants import RESTART_CLOSES, WEBSOCKET_PATH
from tests.support.servers import ONE_HOST_OF_PAGES, PYTHON, Process, free_port, options_env

MODES = {
    "drain": {"drain": 4.0, "old_client": False},
    "no drain": {"drain": 0, "old_client": False},
    "before": {"drain": 0, "old_client": True},
}
PER_WORKER = 2000
# The browser module's DEFAULTS (seconds): restartDelay, backoffInitial, backoffMax, stableAfter.
RESTART_DELAY, BACKOFF_INITIAL, BACKOFF_MAX, STABLE_AFTER = 3.0, 1.0, 30.0, 10.0
POLL_DOWN = 5.0  # a refused subscribe is asked again after pollDown
HINTS_PER_SECOND = 50


# ---------------------------------------------------------------- client worker process


class Page:
    """One page: a socket subscribed to its own channel, reconnecting as the browser module
    does (`old`: as it did before issue 15, every close up the backoff ladder), keeping the
    position it knows from `subscribed` and `message` frames."""

    def __init__(self, port: int, channel: str, stats: Counter, old: bool) -> None:
        self.port, self.channel, self.stats, self.old = port, channel, stats, old
        self.position: dict | None = None
        self.since: dict | None = None  # what the last subscribe said the page knew
        self.socket = None
        self.refetches = 0  # resync callbacks the browser module would have made
        self.refetches_at_subscribe = 0
        self.connects: list[tuple[float, float]] = []  # (when, seconds the handshake took)
        self.log: deque = deque(maxlen=12)  # what happened to it last, for a report
        self.subscribed = asyncio.get_running_loop().create_future()

    def on_text(self, payload: bytes) -> None:
        frame = json.loads(payload)
        kind = frame["type"]
        self.log.append((round(time.time(), 3), frame))
        if kind == "subscribed":
            changed = frame["position"] != self.since  # while the page was away
            self.stats["stale"] += frame["stale"]
            self.stats["changed"] += changed
            self.caught_up(frame["position"])
            # Hints on the new socket before the confirmation may have told the page already.
            told = changed and self.refetches == self.refetches_at_subscribe
            self.stats["changed, heard as a message"] += told
            if not self.subscribed.done():
                self.subscribed.set_result(time.time())
        elif kind == "message":
            self.message(frame["position"])
        elif kind == "resync":  # the server saw the store ahead of what it delivered
            refetches = self.refetches
            self.caught_up(frame["position"])
            self.stats["resynced by the server"] += self.refetches - refetches
        elif kind == "error":  # unavailable: asked again after pollDown, as the browser does
            self.stats["errors"] += 1
            asyncio.get_running_loop().call_later(POLL_DOWN, self.subscribe, self.socket)

    def caught_up(self, p: dict | None) -> None:
        """The server is at `p`: the page refetches if it is behind (createChannel.caughtUp),
        or when the server cannot say (the store did not answer), keeping what it knew."""
        if p is None:
            self.stats["positions unknown"] += 1
            self.refetches += 1
            return
        known = self.position
        if known is None or known["epoch"] != p["epoch"] or known["seq"] < p["seq"]:
            self.position = p
            self.refetches += 1

    def message(self, p: dict) -> None:
        """A hint at `p`, as createChannel.message takes it: seen already, the next one, or
        a jump (a refetch; on a confirmed subscription, a hint lost on the way)."""
        known = self.position
        if p["epoch"] == known["epoch"] and p["seq"] <= known["seq"]:
            return
        self.position = p
        if p["epoch"] == known["epoch"]:
            follows = p["seq"] == known["seq"] + 1
        else:  # the first of a fresh epoch follows the start position
            follows = known == {"epoch": "", "seq": 0} and p["seq"] == 1
        if not follows:
            self.refetches += 1
            self.stats["lost while subscribed"] += self.subscribed.done()

    def subscribe(self, socket) -> None:
        if socket is not self.socket or socket.closed.done():
            return
        self.since = self.position
        self.refetches_at_subscribe = self.refetches
        self.log.append((round(time.time(), 3), f"subscribe since {self.position}"))
        frame = {"type": "subscribe", "channel": self.channel}
        if self.position is not None:
            frame["since"] = self.position
        socket.send_json(frame)

    def wait(self, code: int | None, attempt: int) -> float:
        """Seconds before the next attempt after a close with `code`."""
        if code in RESTART_CLOSES and not self.old:
            return random.random() * RESTART_DELAY
        cap = min(BACKOFF_MAX, BACKOFF_INITIAL * 2**attempt)
        return cap / 2 + random.random() * cap / 2

    async def run(self) -> None:
        from bench.wsclient import connect

        loop, attempt = asyncio.get_running_loop(), 0
        while True:
            started = time.time()
            try:
                connecting = connect("127.0.0.1", self.port, WEBSOCKET_PATH, self.on_text)
                socket = await asyncio.wait_for(connecting, 30)
            except (OSError, TimeoutError):
                self.stats["failed connects"] += 1
                await asyncio.sleep(self.wait(None, attempt))
                attempt += 1
                continue
            self.socket, up = socket, loop.time()
            self.connects.append((time.time(), time.time() - started))
            self.subscribe(socket)
            code = await socket.closed
            self.stats[f"closed {code}"] += 1
            self.log.append((round(time.time(), 3), f"closed {code}"))
            self.subscribed = loop.create_future()
            if loop.time() - up >= STABLE_AFTER:
                attempt = 0
            delay = self.wait(code, attempt)
            attempt += code not in RESTART_CLOSES or self.old
            await asyncio.sleep(delay)


async def command() -> str:
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


async def run_clients(port: int, first: int, count: int, old: bool) -> None:
    stats: Counter = Counter()
    pages = [Page(port, f"roll-{n}", stats, old) for n in range(first, first + count)]
    tasks = []
    for page in pages:
        tasks.append(asyncio.create_task(page.run()))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0.05)  # not everything in one burst
    await asyncio.gather(*(p.subscribed for p in pages))
    report({"ready": True})
    await command()  # "measure": the HUP comes next
    measured = time.time()
    stats.clear()
    for page in pages:
        page.refetches = 0
    while not all(p.connects[-1][0] > measured and p.subscribed.done() for p in pages):
        await asyncio.sleep(0.1)
    report(
        {
            "connects": [c for p in pages for c in p.connects if c[0] > measured],
            "back": [p.subscribed.result() for p in pages],
        }
    )
    server = json.loads(await command())  # where the channels are: the publisher stopped
    refetches = {p.channel: p.refetches for p in pages if p.refetches}
    lost = {p.channel: list(p.log) for p in pages if p.position != server[p.channel]}
    report({"stats": stats, "refetches": refetches, "lost": lost})
    for task in tasks:
        task.cancel()


# ---------------------------------------------------------------- publisher process


def run_publisher(channels: int, rate: float, seed: int) -> None:
    """Publishes on random channels until told to stop; then reports where each channel is."""
    import django

    django.setup()
    import pushgateway
    from pushgateway.backends import get_backend

    rng, stop = random.Random(seed), threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    published: set[str] = set()
    while not stop.wait(1 / rate):
        channel = f"roll-{rng.randrange(channels)}"
        pushgateway.publish(channel)
        published.add(channel)
    assert get_backend().flush(10)
    names = [f"roll-{n}" for n in range(channels)]
    positions = get_backend().read_positions(names)
    report(
        {
            "published": sorted(published),
            "positions": {c: p.as_json() if p else None for c, p in positions.items()},
        }
    )


# ---------------------------------------------------------------- orchestration


def raise_fd_limit() -> None:
    """As many descriptors as the hard limit allows, for this process and its children."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_gunicorn(log_dir: Path, env: dict, drain: float) -> tuple[Process, int]:
    port = free_port()
    args = [PYTHON, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2"]
    args += ["-b", f"127.0.0.1:{port}", "--backlog", "4096", "--graceful-timeout", "30"]
    args += ["--log-level", "warning"]  # not a line per connection
    # Every page comes from this host: no per-address join budget (4,000 joins at once).
    env = {**env, **options_env({**ONE_HOST_OF_PAGES, "DRAIN_SECONDS": drain})}
    process = Process(f"gunicorn-{port}", [*args, "channels_app.asgi:application"], log_dir, env)
    process.wait_for_port(port, timeout=60)
    return process, port


def send(workers: list, line: str) -> None:
    for worker in workers:
        worker.stdin.write(line + "\n")
        worker.stdin.flush()


def tell(workers: list, line: str) -> list[dict]:
    send(workers, line)
    return [read_json(worker) for worker in workers]


def run_mode(sockets: int, drain: float, old_client: bool, env: dict, log_dir: Path) -> dict:
    """One rolling restart under `sockets` pages; what the pages saw of it."""
    raise_fd_limit()
    gunicorn, port = start_gunicorn(log_dir, env, drain)
    workers, publisher = [], None
    try:
        flag = "old" if old_client else "new"
        for first in range(0, sockets, PER_WORKER):
            share = str(min(PER_WORKER, sockets - first))
            args = ("clients", str(port), str(first), share, flag)
            workers.append(child("bench.rolling_restart", *args, env=env))
        for worker in workers:
            read_json(worker)
        rate = str(HINTS_PER_SECOND)
        publisher = child("bench.rolling_restart", "publisher", str(sockets), rate, env=env)
        time.sleep(1)  # hints flowing before the restart too
        send(workers, "measure")
        time.sleep(0.2)
        hup = time.time()
        gunicorn.proc.send_signal(signal.SIGHUP)
        back = [read_json(worker) for worker in workers]
        published = tell([publisher], "stop")[0]
        time.sleep(1)  # the last hints on their way to the pages
        final = tell(workers, json.dumps(published["positions"]))
        return summary(hup, back, final, published)
    finally:
        for process in [*workers, publisher]:
            if process is not None:
                process.kill()
        gunicorn.stop()


def summary(hup: float, back: list[dict], final: list[dict], published: dict) -> dict:
    """What the pages saw of one restart: reconnects per second after the HUP, when all
    were back, what they refetched, and whether each ended where its channel is."""
    connects = [t - hup for r in back for t, _ in r["connects"]]
    waits = sorted(wait for r in back for _, wait in r["connects"])
    per_second = Counter(math.floor(t) for t in connects)
    stats: Counter = sum((Counter(r["stats"]) for r in final), Counter())
    refetches = {c: n for r in final for c, n in r["refetches"].items()}
    lost = {c: log for r in final for c, log in r["lost"].items()}
    untouched = set(published["positions"]) - set(published["published"])
    return {
        "sockets": len(published["positions"]),
        "reconnects": len(connects),
        "peak": max(per_second.values()),
        "per second": [per_second[s] for s in range(max(per_second) + 1)],
        "all back": max(t - hup for r in back for t in r["back"]),
        "p99 handshake": waits[len(waits) * 99 // 100],
        "refetches": sum(refetches.values()),
        "stale": stats["stale"],
        "changed": stats["changed"],
        "changed, heard as a message": stats["changed, heard as a message"],
        "refetches untouched": sum(n for c, n in refetches.items() if c in untouched),
        "resynced by the server": stats["resynced by the server"],
        "positions unknown": stats["positions unknown"],
        "refetched twice": sum(1 for n in refetches.values() if n > 1),
        "lost while subscribed": stats["lost while subscribed"],
        "lost": len(lost),
        "lost pages": dict(list(lost.items())[:3]),
        "channels published": len(published["published"]),
        "closes": {k: n for k, n in stats.items() if k.startswith("closed")},
        "failed connects": stats["failed connects"],
        "errors": stats["errors"],
    }


COLUMNS = {  # header: how a row's cell is written
    "peak conn/s": lambda r: f"{r['peak']:,}",
    "peak share": lambda r: f"{r['peak'] / r['reconnects']:.0%}",
    "p99 wait s": lambda r: f"{r['p99 handshake']:.2f}",
    "all back s": lambda r: f"{r['all back']:.1f}",
    "refetches": lambda r: f"{r['refetches']:,}",
    "changed": lambda r: f"{r['changed'] - r['changed, heard as a message']:,}",
    "needless": lambda r: f"{r['refetches untouched']:,}",
    "lost": lambda r: f"{r['lost'] + r['lost while subscribed']:,}",
}


def print_table(sockets: int, rows: dict[str, dict]) -> None:
    print(f"\n== {sockets:,} sockets on as many channels, gunicorn -w 2 (uvicorn), kill -HUP ==")
    print(f"{'':10}" + "".join(f"{h:>12}" for h in COLUMNS))
    for name, r in rows.items():
        print(f"{name:10}" + "".join(f"{cell(r):>12}" for cell in COLUMNS.values()))
    for name, r in rows.items():
        print(
            f"# {name}: reconnects per second {r['per second']}; closes {r['closes']}, "
            f"{r['failed connects']} failed connects, {r['errors']} subscribes refused, "
            f"{r['channels published']} channels published"
        )
    ours = rows.get("drain")
    for name, base in rows.items():
        if ours is not None and name != "drain":
            print(
                f"drain / {name}: peak connects per second {ours['peak'] / base['peak']:.2f}x, "
                f"p99 handshake wait {ours['p99 handshake'] / base['p99 handshake']:.2f}x, "
                f"time until all back {ours['all back'] / base['all back']:.2f}x, "
                f"refetches {ours['refetches'] / max(1, base['refetches']):.2f}x"
            )


def clients_main(port: str, first: str, count: str, kind: str) -> None:
    asyncio.run(run_clients(int(port), int(first), int(count), old=kind == "old"))


def publisher_main(channels: str, rate: str) -> None:
    run_publisher(int(channels), float(rate), seed=15)


#: The worker processes this benchmark starts: `python -m bench.rolling_restart NAME ARGS`.
WORKERS = {"clients": clients_main, "publisher": publisher_main}


def main() -> None:
    if sys.argv[1:2] and sys.argv[1] in WORKERS:
        WORKERS[sys.argv[1]](*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=4000)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    options = parser.parse_args()

    with bench_environment("bench.rolling_restart") as (log_dir, _redis, env):
        rows = {}
        for name in options.modes:
            rows[name] = run_mode(options.sockets, **MODES[name], env=env, log_dir=log_dir)
            print(f"# {name}: {json.dumps(rows[name])}", flush=True)
    print_table(options.sockets, rows)


if __name__ == "__main__":
    main()
