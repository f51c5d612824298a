"""A clients host: WebSockets to daphne hosts, every frame they receive printed with its time.

    python -m tests.support.host_clients --sockets N --channel C [--channel C ...] \
        NAME=ADDRESS:PORT ...

opens N sockets to each server, subscribes each to every channel, and prints one JSON line
per event: {"server": NAME, "socket": I, "at": TIME, "frame": FRAME} for each frame received,
{"server": NAME, "socket": I, "at": TIME, "closed": CODE} when a socket ends. `Clients` runs
it for a test and answers questions about what the sockets saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

PATH = "/ws/pushgateway/"

Check = Callable[[list[dict]], bool]


class Clients:
    """The program on `host`, seen from the test: `sockets` sockets to each of `servers`
    (name: "ADDRESS:PORT"), each subscribed to `channels`."""

    def __init__(
        self, host, servers: dict[str, str], channels: list[str], sockets: int, log_dir: Path
    ) -> None:
        from tests.support.servers import PYTHON

        self.sockets = sockets
        args = [PYTHON, "-m", "tests.support.host_clients", "--sockets", str(sockets)]
        for channel in channels:
            args += ["--channel", channel]
        args += [f"{name}={where}" for name, where in servers.items()]
        self.process = host.start("clients", args, log_dir, host.env(), pipes=True)
        self._events: list[dict] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.proc.stdout:
            event = json.loads(line)
            with self._lock:
                self._events.append(event)

    def events(self) -> list[dict]:
        with self._lock:
            return list(self._events)

    def frames(self, server: str, channel: str, since: float = 0) -> dict[int, list[dict]]:
        """Frames on `channel` received after `since` by each socket on `server`, with the
        time each arrived as "at"."""
        out: dict[int, list[dict]] = {n: [] for n in range(self.sockets)}
        for event in self.events():
            frame = event.get("frame", {})
            mine = event["server"] == server and frame.get("channel") == channel
            if mine and event["at"] >= since:
                out[event["socket"]].append({**frame, "at": event["at"]})
        return out

    def every_socket(self, servers: Iterable[str], channel: str, check: Check, since=0) -> bool:
        """Whether `check(frames)` holds for what every socket on `servers` received on
        `channel` since `since`."""
        return all(
            check(frames)
            for server in servers
            for frames in self.frames(server, channel, since).values()
        )

    def closed(self, server: str) -> list[dict]:
        return [e for e in self.events() if e["server"] == server and "closed" in e]

    def wait(self, what: str, done: Callable[[], bool], timeout: float) -> float:
        """Wait until `done()`; returns when (time.time()), or fails saying `what`."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                events = self.events()
                odd = [e for e in events if "closed" in e or e["frame"]["type"] == "error"]
                raise AssertionError(
                    f"{what}: not within {timeout}s; {len(events)} events, errors and closes: "
                    f"{odd[:20]}, the last: {events[-5:]}\n{self.process.log()}"
                )
            time.sleep(0.05)
        return time.time()

    def wait_subscribed(self, servers: Iterable[str], channels: Iterable[str]) -> None:
        def subscribed(frames: list[dict]) -> bool:
            # A hint may come just before the confirmation: the hub joins the channel
            # first, then reads its position for the `subscribed` frame.
            return any(f["type"] == "subscribed" for f in frames)

        self.wait(
            "every socket subscribed",
            lambda: all(self.every_socket(servers, c, subscribed) for c in channels),
            timeout=30,
        )

    def stop(self) -> None:
        self.process.stop()


def messages(frames: list[dict]) -> list[dict]:
    return [f for f in frames if f["type"] == "message"]


def resyncs(frames: list[dict]) -> list[dict]:
    return [f for f in frames if f["type"] == "resync"]


def in_order(frames: list[dict]) -> bool:
    """Whether a socket's messages on one channel are one stream without a gap."""
    positions = [(f["position"]["epoch"], f["position"]["seq"]) for f in messages(frames)]
    return all(
        epoch == last_epoch and seq == last_seq + 1
        for (last_epoch, last_seq), (epoch, seq) in zip(positions, positions[1:], strict=False)
    )


# ---------------------------------------------------------------- the program


def say(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def client(name: str, address: str, port: int, index: int, channels: list[str]) -> None:
    from bench.wsclient import connect

    def on_text(data: bytes) -> None:
        say({"server": name, "socket": index, "at": time.time(), "frame": json.loads(data)})

    try:
        socket = await connect(address, port, PATH, on_text)
    except OSError as exc:
        say({"server": name, "socket": index, "at": time.time(), "closed": repr(exc)})
        return
    for channel in channels:
        socket.send_json({"type": "subscribe", "channel": channel})
    code = await socket.closed
    say({"server": name, "socket": index, "at": time.time(), "closed": code})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=10)
    parser.add_argument("--channel", action="append", required=True)
    parser.add_argument("servers", nargs="+", help="NAME=ADDRESS:PORT")
    args = parser.parse_args()
    clients = []
    for server in args.servers:
        name, _, where = server.partition("=")
        address, _, port = where.rpartition(":")
        for index in range(args.sockets):
            clients.append(client(name, address, int(port), index, args.channel))
    await asyncio.gather(*clients)


if __name__ == "__main__":
    asyncio.run(main())
