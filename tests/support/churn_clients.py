"""Churn for tests/system/test_churn.py: WebSockets that connect, subscribe and go, many at once.

    python -m tests.support.churn_clients ADDRESS PORT --cycles N [--concurrency C] [--seed S]

Each cycle opens a socket, subscribes to one to three channels and leaves in one of the ways
of KINDS: orderly (unsubscribe, close frame), or abruptly, as browsers and networks do (a tab
closed mid-subscribe, a TCP reset, a connection dropped without a close frame, a reset in
the middle of the handshake). Prints one JSON line at the end: how many cycles of each
kind, and every failure (a handshake refused, an answer that did not come, an error frame).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import struct
import sys
import time
from collections import Counter

from bench.wsclient import ClientProtocol, connect

PATH = "/ws/pushgateway/"
CHANNELS = 200  # churn-0 .. churn-199: the hub joins and leaves their groups all the time
BUSY = "events"  # a channel with hints flowing (the tests' publisher saves comments)
TIMEOUT = 30  # for each answer awaited: the machine may be busy

KINDS = (
    "orderly",  # unsubscribe each channel, close frame, wait for the server's close
    "close_frame",  # close frame without unsubscribing (a tab closed)
    "fin",  # TCP closed without a close frame
    "reset",  # TCP reset after subscribing
    "reset_mid_subscribe",  # reset before the answers to its subscribes came
    "fin_mid_subscribe",  # closed before the answers to its subscribes came
    "close_mid_subscribe",  # a close frame before the answers to its subscribes came
    "reset_mid_unsubscribe",  # reset right after asking to unsubscribe
    "reset_in_handshake",  # reset before the WebSocket handshake was answered
)


class Page:
    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict] = asyncio.Queue()
        self.socket: ClientProtocol | None = None

    def on_text(self, data: bytes) -> None:
        self.frames.put_nowait(json.loads(data))

    async def expect(self, kind: str, channel: str) -> None:
        """Wait for the `kind` frame on `channel`, passing over hints; fail on an error."""
        while True:
            frame = await asyncio.wait_for(self.frames.get(), TIMEOUT)
            if frame["type"] == "error":
                raise RuntimeError(f"error frame {frame}")
            if frame["type"] == kind and frame["channel"] == channel:
                return

    def send(self, kind: str, channel: str) -> None:
        self.socket.send_json({"type": kind, "channel": channel})


def reset(protocol: ClientProtocol) -> None:
    """Close with a TCP reset: no close frame, no FIN."""
    sock = protocol.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    protocol.transport.abort()


async def cycle(address: str, port: int, kind: str, channels: list[str]) -> None:
    if kind == "reset_in_handshake":
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: ClientProtocol(f"{address}:{port}", PATH, lambda _: None), address, port
        )
        protocol.handshake.add_done_callback(lambda f: f.cancelled() or f.exception())
        reset(protocol)  # the upgrade request is written; its answer never read
        return
    page = Page()
    page.socket = await asyncio.wait_for(connect(address, port, PATH, page.on_text), TIMEOUT)
    for channel in channels:
        page.send("subscribe", channel)
    if kind == "reset_mid_subscribe":
        return reset(page.socket)
    if kind == "fin_mid_subscribe":
        return page.socket.transport.close()
    if kind == "close_mid_subscribe":
        page.socket.send_frame(struct.pack("!H", 1000), opcode=8)
        await asyncio.wait_for(page.socket.closed, TIMEOUT)
        return
    for channel in channels:
        await page.expect("subscribed", channel)
    if kind == "orderly":
        for channel in channels:
            page.send("unsubscribe", channel)
            await page.expect("unsubscribed", channel)
    if kind == "reset_mid_unsubscribe":
        page.send("unsubscribe", channels[0])
        return reset(page.socket)
    if kind in ("orderly", "close_frame"):
        page.socket.send_frame(struct.pack("!H", 1000), opcode=8)
        await asyncio.wait_for(page.socket.closed, TIMEOUT)
    elif kind == "fin":
        page.socket.transport.close()
    elif kind == "reset":
        reset(page.socket)


async def churn(address: str, port: int, cycles: int, concurrency: int, seed: int) -> dict:
    rng = random.Random(seed)
    plan = []
    for _ in range(cycles):
        channels = rng.sample([f"churn-{n}" for n in range(CHANNELS)], rng.randint(1, 3))
        if rng.random() < 0.3:
            channels.append(BUSY)
        plan.append((rng.choice(KINDS), channels))
    kinds: Counter[str] = Counter()
    failures: list[str] = []

    async def worker() -> None:
        while plan:
            kind, channels = plan.pop()
            try:
                await cycle(address, port, kind, channels)
                kinds[kind] += 1
            except Exception as exc:
                failures.append(f"{kind}: {exc!r}")

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.monotonic() - started
    return {"cycles": sum(kinds.values()), "kinds": kinds, "failures": failures, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("--cycles", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    result = asyncio.run(churn(args.address, args.port, args.cycles, args.concurrency, args.seed))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
