"""A flood of fresh channel names for tests/integration/test_flood.py: many sockets from one
client address, each subscribing to names nobody watches and reconnecting, over and over.

    python -m tests.support.flood_clients HOST PORT --source 127.0.0.1 --sockets 50
        --names 100 --seconds 8 [--round 1]

(`--source` may list several addresses: the sockets are spread over them.)

Each socket subscribes to `names` fresh names at once, waits for every answer (at most
`round` seconds: a client told to wait reconnects for a fresh budget instead), closes and
connects again, until `seconds` have passed. Prints one line, "flooding", once every socket
has sent its first subscribes, and one JSON line at the end: cycles, the answers by kind
(`subscribed` or the error code) and failures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
import uuid
from collections import Counter

from bench.wsclient import ClientProtocol

PATH = "/ws/pushgateway/"
TIMEOUT = 30  # for a connection or close: the machine may be busy


async def open_socket(host: str, port: int, source: str, on_text) -> ClientProtocol:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: ClientProtocol(f"{host}:{port}", PATH, on_text),
        host,
        port,
        local_addr=(source, 0),
    )
    await asyncio.wait_for(protocol.handshake, TIMEOUT)
    return protocol


async def flood(args: argparse.Namespace) -> dict:
    prefix = uuid.uuid4().hex[:8]
    counter = itertools.count()
    answers: Counter[str] = Counter()
    unanswered = [0]  # rounds given up before all their answers came
    failures: list[str] = []
    started = asyncio.Event()
    first_rounds = 0
    cycles = 0
    deadline = time.monotonic() + args.seconds

    async def answers_of(left: asyncio.Queue) -> bool:
        """Wait for the answers of one round, for `round` seconds at most (a client told to
        wait reconnects for a new budget instead); False when they did not all come."""
        until = min(deadline, time.monotonic() + args.round)
        for _ in range(args.names):
            try:
                frame = await asyncio.wait_for(left.get(), until - time.monotonic())
            except TimeoutError:
                unanswered[0] += 1
                return False
            frame = json.loads(frame)
            answers[frame.get("code") or frame["type"]] += 1
        return True

    async def worker(source: str) -> None:
        nonlocal first_rounds, cycles
        while time.monotonic() < deadline:
            left = asyncio.Queue()
            socket = await open_socket(args.host, args.port, source, left.put_nowait)
            for _ in range(args.names):
                channel = f"flood-{prefix}-{next(counter)}"
                socket.send_json({"type": "subscribe", "channel": channel})
            if first_rounds < args.sockets:
                first_rounds += 1
                if first_rounds == args.sockets:
                    started.set()
            await answers_of(left)
            socket.transport.close()
            await asyncio.wait_for(socket.closed, TIMEOUT)
            cycles += 1

    async def guarded(source: str) -> None:
        try:
            await worker(source)
        except Exception as exc:
            failures.append(repr(exc))

    async def say_started() -> None:
        await started.wait()
        sys.stdout.write("flooding\n")
        sys.stdout.flush()

    announcer = asyncio.ensure_future(say_started())
    sources = args.source.split(",")
    await asyncio.gather(*(guarded(sources[n % len(sources)]) for n in range(args.sockets)))
    announcer.cancel()
    result = {"cycles": cycles, "answers": answers, "unanswered": unanswered[0]}
    return {**result, "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument(
        "--source", default="127.0.0.1", help="the local address(es) to connect from, a comma list"
    )
    parser.add_argument("--sockets", type=int, default=50)
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--round", type=float, default=1, help="most seconds a round waits")
    result = asyncio.run(flood(parser.parse_args()))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
