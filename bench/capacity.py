"""Capacity benchmark: how many subscribed pages one box serves, per server and process count.

For each configuration (an ASGI server, a number of server processes, each on its own
port, all behind one Redis pub/sub channel layer) it opens sockets in steps (5k, 10k, 20k by
default) from a few load-client processes; at each step it sends broadcasts and measures
delivery latency and the servers' CPU. At the top it measures idle CPU, then one hint per
second, then a reconnect storm (every client drops its socket and reconnects at once).

Server CPU is read from /proc (utime + stime of each server process and its children) over
each phase, so it does not depend on how long the phase took on a busy machine; latency
does. GC pauses come from a gc.callbacks probe in the served application (bench/served.py).
Clients, publisher, Redis and servers share the machine: every figure is pessimistic.

    .venv/bin/python -m bench.capacity                          # the whole matrix (~10 min)
    .venv/bin/python -m bench.capacity --only daphne:2 uvicorn:2 --sockets 10000
    .venv/bin/python -m bench.capacity --only daphne:1 --steps 5000 --rate-seconds 10
    .venv/bin/python -m bench.capacity --only daphne+gc+ping:1      # daphne with some knobs
    .venv/bin/python -m bench.capacity --only daphne:1 --profile /tmp/prof   # py-spy phases
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import child as child_process  # noqa: E402
from bench.common import environment  # noqa: E402
from bench.pyspy import profiled  # noqa: E402
from bench.wsclient import split_frames  # noqa: E402
from tests.support.servers import Process, RedisServer, free_port  # noqa: E402

APP = "bench.served:application"
CHANNEL = "capacity"
PUBLISHED_AT = re.compile(rb'"t":\s*([0-9.eE+-]+)')
TICK = os.sysconf("SC_CLK_TCK")
# Descriptors a server process needs besides its sockets (listening socket, Redis, logs...).
FD_RESERVE = 100
SOCKETS_PER_CLIENT = 5000
# Daphne's knobs, each measurable alone as daphne+KNOB (e.g. daphne+gc+ping):
# gc, frames and autobahn are channels_app.tuning's (off in plain "daphne"); the
# others are daphne command-line options with the values docs/deployment.md recommends.
DAPHNE_KNOBS = {
    "gc": [],
    "frames": [],
    "autobahn": [],
    "ping": ["--ping-interval", "30", "--ping-timeout", "30"],
    "handshake": ["--websocket_connect_timeout", "15"],
    "backlog": [],  # listen with -e ...:backlog=N instead of -b/-p (Twisted's default is 50)
}
ALIASES = {"daphne-tuned": "daphne+" + "+".join(DAPHNE_KNOBS)}
BACKLOG = 4096


def server_command(server: str, port: int) -> tuple[list[str], dict]:
    """The command line of one server process on `port`, and its extra environment."""
    py = sys.executable
    name, *knobs = ALIASES.get(server, server).split("+")
    host, p = "127.0.0.1", str(port)
    if name == "daphne":
        args = [py, "-m", "daphne", "-v", "0"]
        if "backlog" in knobs:
            args += ["-e", f"tcp:port={port}:interface={host}:backlog={BACKLOG}"]
        else:
            args += ["-b", host, "-p", p]
        for knob in knobs:
            args += DAPHNE_KNOBS[knob]
        tuning = ",".join(k for k in knobs if k in ("gc", "frames", "autobahn")) or "off"
        return [*args, APP], {"PUSHGATEWAY_TUNING": tuning}
    if knobs:
        raise ValueError(f"knobs are daphne's: {server}")
    if name == "bare":  # the practical limit of Python: bench/bare_websockets.py
        return [py, "-m", "bench.bare_websockets", p, str(BACKLOG)], {}
    if name == "uvicorn":
        args = [py, "-m", "uvicorn", "--host", host, "--port", p, "--ws", "websockets-sansio"]
        args += ["--lifespan", "off", "--no-access-log", "--log-level", "warning"]
        return [*args, "--backlog", str(BACKLOG), APP], {}
    if name == "hypercorn":
        args = [py, "-m", "hypercorn", "-b", f"{host}:{p}", "--backlog", str(BACKLOG)]
        app = APP if sys.version_info >= (3, 12) else "bench.served:coroutine_application"
        return [*args, "--log-level", "WARNING", app], {}
    if name == "granian":
        args = [py, "-m", "granian", "--interface", "asgi", "--host", host, "--port", p]
        args += ["--workers", "1", "--backlog", str(BACKLOG), "--backpressure", "100000"]
        return [*args, "--log-level", "warning", APP], {}
    raise ValueError(f"unknown server {server!r}")


SERVERS = ["bare", "daphne", "daphne-tuned", "uvicorn", "hypercorn", "granian"]
# Every ratio is against a bare `websockets` server on redis-py with as many processes.
BASELINE = "bare"
DEFAULT_MATRIX = ["bare:2", "daphne:2", "daphne-tuned:2", "uvicorn:2", "hypercorn:2", "granian:2"]


# ---------------------------------------------------------------- load-client process


class Socket(asyncio.Protocol):
    """One client socket: handshake, subscribe, then receive; as little work as possible."""

    __slots__ = ("worker", "transport", "buffer", "state", "settled")

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.transport = None
        self.buffer = b""
        self.state = 0  # 0 handshake, 1 subscribing, 2 subscribed, 3 gone
        self.settled = asyncio.get_running_loop().create_future()  # subscribed or failed

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.worker.request[transport.get_extra_info("peername")[1]])

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        if self.state == 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.fail("http " + buf[9:12].decode("latin1"))
                self.transport.close()
                return
            buf = buf[end + 4 :]
            self.state = 1
            self.transport.write(self.worker.subscribe)
        worker = self.worker
        frames, self.buffer = split_frames(buf)
        for opcode, payload in frames:
            if opcode == 1:
                if payload.startswith(b'{"type":"message"'):
                    worker.on_message(payload)
                elif payload.startswith(b'{"type":"subscribed"') and self.state == 1:
                    self.state = 2
                    if not self.settled.done():
                        self.settled.set_result(True)
            elif opcode == 9:  # ping: answer pong with the same payload
                self.transport.write(masked(payload, 0xA))
            elif opcode == 8:
                self.transport.close()

    def fail(self, reason: str) -> None:
        if self.state < 2:
            self.worker.failures[reason] = self.worker.failures.get(reason, 0) + 1
            if not self.settled.done():  # wait_for cancels it on a timeout
                self.settled.set_result(False)
        self.state = 3

    def connection_lost(self, exc) -> None:
        if self.state == 2:
            self.worker.dropped += 1
        self.fail("reset" if exc else "closed")


def masked(payload: bytes, opcode: int = 1) -> bytes:
    """A client frame; the mask is all zeros, which RFC 6455 allows (any 32-bit value)."""
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, 0x80 | n])
    else:
        header = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", n)
    return header + b"\0\0\0\0" + payload


class Worker:
    """The sockets of one client process, driven by JSON commands on stdin."""

    def __init__(self, index: int, ports: list[int]) -> None:
        self.index = index
        self.ports = ports
        self.request = {
            port: (
                f"GET /ws/pushgateway/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://127.0.0.1:{port}\r\n\r\n"
            ).encode()
            for port in ports
        }
        self.subscribe = masked(json.dumps({"type": "subscribe", "channel": CHANNEL}).encode())
        self.sockets: list[Socket] = []
        self.generation = 0
        self.latencies: list[float] = []
        self.waiting: tuple[int, asyncio.Future] | None = None
        self.failures: dict[str, int] = {}
        self.dropped = 0

    # callbacks from sockets
    def on_message(self, payload: bytes) -> None:
        now = time.time()
        match = PUBLISHED_AT.search(payload)  # the hint's data: {"s": ..., "t": ...}
        self.latencies.append(now - float(match[1]))
        waiting = self.waiting
        if waiting is not None and len(self.latencies) >= waiting[0] and not waiting[1].done():
            waiting[1].set_result(None)

    # commands
    async def open(self, count: int, concurrency: int, timeout: float) -> dict:
        """Open sockets until this worker holds `count`; each subscribes to CHANNEL."""
        loop = asyncio.get_running_loop()
        start = time.time()
        self.failures = {}
        todo = count - len(self.sockets)
        if todo <= 0:
            return {"opened": 0, "failures": {}, "seconds": 0.0}
        # A fresh source address per generation: the sockets it replaces linger in
        # TIME_WAIT, and one address has only ~28k ephemeral ports per server port.
        source = (f"127.{10 + self.generation}.{self.index}.1", 0)
        gate = asyncio.Semaphore(concurrency)
        first = len(self.sockets)

        async def one(i: int) -> None:
            # Hold the gate until the handshake is answered: bounded in-flight handshakes.
            async with gate:
                sock = Socket(self)
                port = self.ports[i % len(self.ports)]
                try:
                    await asyncio.wait_for(
                        loop.create_connection(lambda: sock, "127.0.0.1", port, local_addr=source),
                        max(0.01, timeout - (time.time() - start)),
                    )
                    self.sockets.append(sock)
                    await asyncio.wait_for(sock.settled, max(0.01, timeout - (time.time() - start)))
                except TimeoutError:
                    sock.fail("timeout")
                    if sock.transport is not None:
                        sock.transport.abort()
                except OSError as exc:
                    sock.fail(type(exc).__name__)

        await asyncio.gather(*(one(i) for i in range(first, first + todo)))
        self.sockets = [s for s in self.sockets if s.state == 2]
        opened = len(self.sockets) - first
        return {"opened": opened, "failures": self.failures, "seconds": time.time() - start}

    async def wait(self, per_socket: int, timeout: float) -> dict:
        """Wait until each socket's share of messages has arrived since the last collect."""
        messages = per_socket * len(self.sockets)
        future = asyncio.get_running_loop().create_future()
        self.waiting = (messages, future)
        if len(self.latencies) >= messages:
            future.set_result(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, timeout)
        self.waiting = None
        return {"received": len(self.latencies)}

    def collect(self) -> dict:
        latencies, self.latencies = self.latencies, []
        return {"latencies": [round(x, 5) for x in latencies]}

    async def storm(self, concurrency: int, timeout: float) -> dict:
        """Drop every socket at once (as a network blip does) and reconnect them all."""
        count = len(self.sockets)
        for sock in self.sockets:
            sock.state = 3
            sock.transport.abort()
        self.sockets = []
        self.generation += 1
        await asyncio.sleep(0)
        return await self.open(count, concurrency, timeout)


async def client_main(index: int, ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(index, ports)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        kind = command.pop("cmd")
        if kind == "open":
            reply = await worker.open(**command)
        elif kind == "wait":
            reply = await worker.wait(**command)
        elif kind == "collect":
            reply = worker.collect()
        elif kind == "storm":
            reply = await worker.storm(**command)
        else:
            reply = {"error": kind}
        reply["held"] = len(worker.sockets)
        reply["dropped"] = worker.dropped
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    for sock in worker.sockets:
        sock.transport.abort()


# ---------------------------------------------------------------- publisher process


def publisher_main() -> None:
    """Publish hints through pushgateway.publish() on command: `N RATE` per stdin line."""
    import django

    django.setup()
    import pushgateway
    from pushgateway.backends import get_backend

    pushgateway.publish("capacity-warmup")  # connects to Redis before any clock starts
    get_backend().flush(10)
    print(json.dumps({"ready": True}), flush=True)
    sent = 0
    for line in sys.stdin:
        count, rate = line.split()
        start = time.time()
        for i in range(int(count)):
            delay = start + i / float(rate) - time.time() if float(rate) else 0
            if delay > 0:
                time.sleep(delay)
            pushgateway.publish(CHANNEL, {"t": time.time(), "s": sent})
            sent += 1
            get_backend().flush(10)
        print(json.dumps({"start": start, "end": time.time()}), flush=True)


# ---------------------------------------------------------------- orchestration


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of `pid` and all its descendants that are alive."""
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[float, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        stats[int(entry.name)] = (int(fields[11]) / TICK, int(fields[12]) / TICK)
    user = system = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        u, s = stats.get(p, (0.0, 0.0))
        user, system = user + u, system + s
        todo += children.get(p, [])
    return user, system


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and all its descendants that are alive."""
    return sum(cpu_times(pid))


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` and its descendants, KiB."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def descendants(pid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                text = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                out.append(int(entry.name))
                out += descendants(int(entry.name))
    return out


class Child:
    """A benchmark child process (clients or publisher) spoken to in JSON lines."""

    def __init__(self, *args: str, env: dict) -> None:
        self.proc = child_process("bench.capacity", *args, env=env)

    def send(self, **command) -> None:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def line(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.proc.args} exited with {self.proc.wait(30)}")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # end of commands: the child cleans up and exits
                self.proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def ask_all(clients: list[Child], **command) -> list[dict]:
    for client in clients:
        client.send(**command)
    return [client.read() for client in clients]


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else math.nan


@dataclass
class Config:
    server: str
    processes: int
    sockets: int

    @property
    def name(self) -> str:
        return f"{self.server} x{self.processes}"


@dataclass
class Options:
    steps: list[int]
    broadcasts: int
    idle_seconds: float
    rate_seconds: float
    storm: bool
    concurrency: int
    storm_concurrency: int
    log_dir: Path
    env: dict
    profile: Path | None = None


class Servers:
    """N processes of one server, each on its own port, with the GC probe on."""

    def __init__(self, config: Config, options: Options) -> None:
        self.procs: list[Process] = []
        self.ports = [free_port() for _ in range(config.processes)]
        self.gc_dir = options.log_dir / f"gc-{config.server}-{config.processes}-{time.time():.0f}"
        self.gc_dir.mkdir()
        for port in self.ports:
            args, extra = server_command(config.server, port)
            env = {**options.env, **extra, "BENCH_GC_DIR": str(self.gc_dir)}
            self.procs.append(Process(f"{config.server}-{port}", args, options.log_dir, env))
        for proc, port in zip(self.procs, self.ports, strict=True):
            proc.wait_for_port(port, timeout=60)

    @property
    def pids(self) -> list[int]:
        return [p.proc.pid for p in self.procs]

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def rss(self) -> int:
        return sum(rss_kib(pid) for pid in self.pids)

    def gc(self, since: float, until: float) -> dict:
        """The longest GC pause between two times (time.time()), and their sum."""
        stats = [json.loads(p.read_text()) for p in self.gc_dir.glob("gc-*.json")]
        pauses = [p for s in stats for p in s["pauses"] if since <= p[0] <= until]
        return {
            "max_ms": max((p[1] for p in pauses), default=0.0),
            "max_cpu_ms": max((p[3] for p in pauses), default=0.0),
            "long_s": sum(p[1] for p in pauses) / 1000,
        }

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


def run_config(config: Config, options: Options) -> dict:
    result: dict = {"steps": {}, "refused": 0, "failures": {}}
    servers = Servers(config, options)
    clients: list[Child] = []
    publisher = None
    try:
        n_clients = max(1, math.ceil(config.sockets / SOCKETS_PER_CLIENT))
        ports = ",".join(map(str, servers.ports))
        clients = [Child("clients", str(i), ports, env=options.env) for i in range(n_clients)]
        publisher = Child("publisher", env=options.env)
        publisher.read()
        # One socket per worker first: imports, the hub and the layer connection are not
        # per-socket costs.
        ask_all(clients, cmd="open", count=1, concurrency=1, timeout=30)
        time.sleep(0.5)
        rss0, warm = servers.rss(), time.time()
        connect_cpu = connect_seconds = 0.0
        steps = [s for s in options.steps if s < config.sockets] + [config.sockets]

        def phase(name: str, step: int | None = None):
            """py-spy on the first server process for this phase, with --profile."""
            if not options.profile or (step is not None and step != steps[-1]):
                return contextlib.nullcontext()
            out = options.profile / f"{config.server}-x{config.processes}-{name}.txt"
            return profiled(servers.pids[0], out)

        for step in steps:
            per_client = [step // n_clients + (i < step % n_clients) for i in range(n_clients)]
            cpu0, t0 = servers.cpu(), time.time()
            with phase("connect", step):
                for client, count in zip(clients, per_client, strict=True):
                    client.send(
                        cmd="open", count=max(1, count), concurrency=options.concurrency, timeout=60
                    )
                replies = [client.read() for client in clients]
            connect_seconds += time.time() - t0
            connect_cpu += servers.cpu() - cpu0
            count_failures(result, replies)
            held = sum(r["held"] for r in replies)
            time.sleep(1.5)  # a burst has settled (channels_app.tuning freezes after 1 s)
            step_result = {"held": held}
            if not held:
                raise RuntimeError(f"{config.name}: no socket opened: {result['failures']}")
            latencies: list[float] = []
            cpu_total = 0.0
            for i in range(options.broadcasts):
                ask_all(clients, cmd="collect")
                cpu0 = servers.cpu()
                with phase(f"broadcast{i}", step):
                    publisher.line("1 0")
                    publisher.read()
                    ask_all(clients, cmd="wait", per_socket=1, timeout=15)
                cpu_total += servers.cpu() - cpu0
                for reply in ask_all(clients, cmd="collect"):
                    latencies += reply["latencies"]
                time.sleep(0.5)
            latencies.sort()
            expected = held * options.broadcasts
            step_result.update(
                p50=percentile(latencies, 0.5) * 1000,
                p99=percentile(latencies, 0.99) * 1000,
                max=(latencies[-1] * 1000) if latencies else math.nan,
                lost=expected - len(latencies),
                us_per_socket=cpu_total / max(1, options.broadcasts) / held * 1e6,
            )
            result["steps"][step] = step_result
            print(
                f"  {config.name}: {held:,} sockets, broadcast {fmt_step(step_result)}", flush=True
            )
        result["held"] = held
        result["connects_per_s"] = (held - len(clients)) / connect_seconds
        result["cpu_per_connect_ms"] = connect_cpu / max(1, held - len(clients)) * 1000
        result["kib_per_socket"] = (servers.rss() - rss0) / max(1, held - len(clients))

        # Idle: nothing happens but the servers' keepalives and housekeeping.
        cpu0, t0 = servers.cpu(), time.time()
        with phase("idle"):
            time.sleep(options.idle_seconds)
        result["idle_us"] = (servers.cpu() - cpu0) / (time.time() - t0) / held * 1e6

        # One hint per second.
        if options.rate_seconds:
            ask_all(clients, cmd="collect")
            count = int(options.rate_seconds)
            publisher.line(f"{count} 1")
            publisher.read()
            ask_all(clients, cmd="wait", per_socket=count, timeout=10)
            latencies = sorted(
                x for reply in ask_all(clients, cmd="collect") for x in reply["latencies"]
            )
            result["rate"] = {
                "p50": percentile(latencies, 0.5) * 1000,
                "p99": percentile(latencies, 0.99) * 1000,
                "max": (latencies[-1] * 1000) if latencies else math.nan,
                "lost": held * count - len(latencies),
            }

        # Reconnect storm.
        storm_start = time.time()
        if options.storm:
            cpu0, t0 = servers.cpu(), time.time()
            with phase("storm"):
                replies = ask_all(
                    clients, cmd="storm", concurrency=options.storm_concurrency, timeout=30
                )
            seconds = time.time() - t0
            storm_refused = sum(sum(r["failures"].values()) for r in replies)
            for r in replies:
                for reason, n in r["failures"].items():
                    result["failures"][f"storm {reason}"] = (
                        result["failures"].get(f"storm {reason}", 0) + n
                    )
            result["storm"] = {
                "seconds": seconds,
                "refused": storm_refused,
                "held": sum(r["held"] for r in replies),
                "cpu_per_connect_ms": (servers.cpu() - cpu0) / max(1, held) * 1000,
            }
        # Settled bursts freeze, and after a storm thaw (channels_app.tuning): wait for it, so
        # the storm's GC column holds that pause too.
        time.sleep(3)
        result["gc"] = servers.gc(warm, storm_start)
        result["storm_gc"] = servers.gc(storm_start, time.time())
        return result
    finally:
        for child in clients:
            child.stop()
        if publisher is not None:
            publisher.stop()
        servers.stop()


def count_failures(result: dict, replies: list[dict]) -> None:
    for reply in replies:
        for reason, n in reply["failures"].items():
            result["refused"] += n
            result["failures"][reason] = result["failures"].get(reason, 0) + n


def fmt_step(s: dict) -> str:
    return (
        f"p50 {s['p50']:.0f} ms, p99 {s['p99']:.0f} ms, max {s['max']:.0f} ms, "
        f"{s['us_per_socket']:.0f} us CPU/socket, lost {s['lost']}"
    )


# ---------------------------------------------------------------- report


def ratio(value: float, base: float | None) -> str:
    if base is None or math.isnan(base) or math.isnan(value):
        return ""
    if abs(base) < 0.05:  # shown as 0.0 or 0: a ratio to it would only mislead
        return "-"
    return f"{value / base:.2f}x"


def print_report(results: dict[str, dict], configs: list[Config], options: Options) -> None:
    W = max(18, *(len(c.name) + 2 for c in configs))  # noqa: N806 (a width, not a variable)

    def base_of(config: Config) -> dict | None:
        return results.get(Config(BASELINE, config.processes, config.sockets).name)

    print("\n== sockets, connects, memory, idle, GC before the storm (ratios: to bare) ==")
    head = ["held", "refused", "conn/s", "ms CPU/conn", "KiB/socket", "idle us/s", "GC max ms"]
    head.append("(CPU ms)")
    print(f"{'':{W}}" + "".join(f"{h:>12}" for h in head) + "   ratios (CPU/conn idle GC)")
    for config in configs:
        r = results.get(config.name)
        if r is None:
            continue
        r["gc_max"] = r["gc"]["max_ms"]
        refused = r["refused"] + r.get("storm", {}).get("refused", 0)
        cells = [f"{r['held']:12,}", f"{refused:12,}", f"{r['connects_per_s']:12,.0f}"]
        cells += [f"{r[k]:12.2f}" for k in ("cpu_per_connect_ms", "kib_per_socket")]
        cells += [f"{r['idle_us']:12.1f}", f"{r['gc_max']:12.0f}"]
        cells.append(f"{r['gc']['max_cpu_ms']:12.0f}")
        b = base_of(config)
        ratios = ""
        if b and b is not r:
            ratios = " ".join(
                ratio(r[k], b[k]) for k in ("cpu_per_connect_ms", "idle_us", "gc_max")
            )
        print(f"{config.name:{W}}" + "".join(cells) + "   " + ratios)

    print("\n== one broadcast (p50/p99/max ms of every delivery, CPU us per socket) ==")
    steps = sorted({s for r in results.values() for s in r["steps"]})
    print(f"{'':{W}}{'sockets':>8}{'p50':>8}{'p99':>8}{'max':>8}{'lost':>7}{'us/sock':>9}   ratios")
    for config in configs:
        r = results.get(config.name)
        if r is None:
            continue
        b = base_of(config)
        for step in steps:
            s = r["steps"].get(step)
            if s is None:
                continue
            bs = b["steps"].get(step) if b and b is not r else None
            ratios = ""
            if bs:
                ratios = f"p99 {ratio(s['p99'], bs['p99'])} "
                ratios += f"CPU {ratio(s['us_per_socket'], bs['us_per_socket'])}"
            print(
                f"{config.name:{W}}{s['held']:8,}{s['p50']:8.0f}{s['p99']:8.0f}{s['max']:8.0f}"
                f"{s['lost']:7,}{s['us_per_socket']:9.1f}   {ratios}"
            )

    def having(key: str):
        """(name, result, result[key]) of each configuration that measured `key`."""
        for config in configs:
            r = results.get(config.name)
            if r is not None and key in r:
                yield config.name, r, r[key]

    if options.rate_seconds:
        print(f"\n== one hint per second for {options.rate_seconds:.0f} s to every socket (ms) ==")
        print(f"{'':{W}}{'sockets':>8}{'p50':>8}{'p99':>8}{'max':>8}{'lost':>8}   ratios")
        bases = {
            c.processes: results.get(Config(BASELINE, c.processes, c.sockets).name) for c in configs
        }
        for config in configs:
            r = results.get(config.name)
            if r is None or "rate" not in r:
                continue
            x, b = r["rate"], (bases[config.processes] or {}).get("rate")
            ratios = (
                f"p50 {ratio(x['p50'], b['p50'])} p99 {ratio(x['p99'], b['p99'])}"
                if b and b is not x
                else ""
            )
            print(
                f"{config.name:{W}}{r['held']:8,}{x['p50']:8.0f}{x['p99']:8.0f}{x['max']:8.0f}"
                f"{x['lost']:8,}   {ratios}"
            )

    if options.storm:
        print("\n== reconnect storm: every socket dropped and reopened at once ==")
        head = ["sockets", "seconds", "conn/s", "refused", "ms CPU/conn", "GC max ms"]
        print(f"{'':{W}}" + "".join(f"{h:>12}" for h in head))
        for name, r, x in having("storm"):
            print(
                f"{name:{W}}{x['held']:12,}{x['seconds']:12.1f}"
                f"{x['held'] / x['seconds']:12,.0f}{x['refused']:12,}"
                f"{x['cpu_per_connect_ms']:12.2f}{r['storm_gc']['max_ms']:12.0f}"
            )
    for config in configs:
        r = results.get(config.name)
        if r and r["failures"]:
            print(f"# {config.name} failed connects: {r['failures']}")


def parse_config(text: str, sockets: int, max_per_process: int) -> Config:
    server, _, processes = text.partition(":")
    name, *knobs = ALIASES.get(server, server).split("+")
    if name not in SERVERS or any(k not in DAPHNE_KNOBS for k in knobs):
        raise SystemExit(
            f"unknown server {server!r}; choose from {', '.join(SERVERS)}, "
            f"or daphne+KNOB+... with knobs {', '.join(DAPHNE_KNOBS)}"
        )
    n = int(processes or 1)
    return Config(server, n, min(sockets, n * max_per_process))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "clients":
        asyncio.run(client_main(int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "publisher":
        publisher_main()
        return

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        nargs="*",
        metavar="SERVER:PROCESSES",
        help=f"configurations (default: {' '.join(DEFAULT_MATRIX)}); servers: {', '.join(SERVERS)}",
    )
    parser.add_argument("--sockets", type=int, default=20_000, help="sockets at the top step")
    parser.add_argument(
        "--steps",
        type=int,
        nargs="*",
        default=[5000, 10_000],
        help="socket counts below the top to broadcast at",
    )
    parser.add_argument("--broadcasts", type=int, default=1, help="broadcasts per step")
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument(
        "--rate-seconds", type=float, default=60, help="one hint per second for this long (0: skip)"
    )
    parser.add_argument("--no-storm", action="store_true", help="skip the reconnect storm")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="handshakes in flight per client process while filling",
    )
    parser.add_argument(
        "--storm-concurrency",
        type=int,
        default=1000,
        help="handshakes in flight per client process in the storm",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the first server process per phase into this folder"
    )
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    max_per_process = hard - FD_RESERVE
    configs = [parse_config(c, args.sockets, max_per_process) for c in args.only or DEFAULT_MATRIX]
    log_dir = Path(tempfile.mkdtemp(prefix="pushgateway-capacity-"))
    redis = RedisServer(log_dir)
    env = environment(log_dir, redis.url)
    options = Options(
        steps=args.steps,
        broadcasts=args.broadcasts,
        idle_seconds=args.idle_seconds,
        rate_seconds=args.rate_seconds,
        storm=not args.no_storm,
        concurrency=args.concurrency,
        storm_concurrency=args.storm_concurrency,
        log_dir=log_dir,
        env=env,
        profile=args.profile,
    )
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.capacity " + " ".join(sys.argv[1:])
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores, "
        f"{hard} descriptors per process; logs in {log_dir}"
    )
    print(f"# reproduce: {command.strip()}", flush=True)
    results: dict[str, dict] = {}
    started = time.time()
    try:
        for config in configs:
            t0 = time.time()
            results[config.name] = run_config(config, options)
            print(f"  {config.name}: done in {time.time() - t0:.0f} s", flush=True)
    finally:
        redis.stop()
    print_report(results, configs, options)
    print(f"\n# {time.time() - started:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
