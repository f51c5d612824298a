"""Graceful drain: a server process told to stop closes its WebSockets over a window.

daphne has no graceful shutdown (daphne#177): on SIGTERM it drops every socket at once, and
uvicorn closes them all at once with 1012, so every page of the process reconnects in the
same second. Once a process has served its first WebSocket, its SIGTERM runs the drain
first (the server's own handler, pushgateway.adapters.server_shutdown_handler, is called
after it):

1. the process stops accepting connections (adapters.stop_listening): new pages go to the
   other processes, and a socket that still gets through is refused (403);
2. its sockets are closed with 4012 (CloseCode.SERVICE_RESTART) in random order, evenly
   over OPTIONS["DRAIN_SECONDS"]; the browser module reconnects each within a few seconds,
   with jitter, and subscribes with its positions, so it refetches only what changed;
3. after at most LINGER seconds for the close handshakes the server's own handler runs: its
   usual shutdown follows, with nothing left to drop.

Meanwhile the hub does not leave the channel-layer group of each channel whose last socket
closes (a Redis round trip each, thousands of them): the process exits, and Redis drops its
subscriptions with its connection.

A second SIGTERM during the drain runs the server's handler at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pushgateway.adapters import server_shutdown_handler, stop_listening
from pushgateway.backends import get_config

from .hub import running_hub

logger = logging.getLogger("pushgateway.drain")

#: Seconds the closes are spread over (OPTIONS["DRAIN_SECONDS"]; 0: no drain).
DEFAULT_DRAIN_SECONDS = 5.0
#: Seconds between two batches of closes.
TICK = 0.05
#: Seconds the closed sockets get to finish their close handshakes before the server's own
#: shutdown drops what is left.
LINGER = 1.0


class Socket(Protocol):
    def restart(self) -> None:
        """Close with SERVICE_RESTART, without waiting."""


class Drain:
    """The WebSockets of this process, and closing them all over `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.sockets: set[Socket] = set()
        self.draining = False
        self.handler: Callable[[int, Any], Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None

    def opened(self, socket: Socket) -> None:
        self.sockets.add(socket)

    def closed(self, socket: Socket) -> None:
        self.sockets.discard(socket)

    def install(self, handler: Callable[[int, Any], Any], loop: asyncio.AbstractEventLoop):
        """Drain on SIGTERM, then call `handler` (the server's own) on `loop`."""
        self.handler, self.loop = handler, loop
        signal.signal(signal.SIGTERM, self._signalled)

    def _signalled(self, signum: int, frame: Any) -> None:
        if self.draining:  # told twice: stop waiting
            logger.warning("pushgateway: SIGTERM again during the drain: shutting down now")
            self.handler(signum, frame)
            return
        self.draining = True
        self.loop.call_soon_threadsafe(self._start, signum)

    def _start(self, signum: int) -> None:
        self.task = asyncio.ensure_future(self.run(signum))

    async def run(self, signum: int = signal.SIGTERM) -> None:
        """Stop accepting, close every socket over the window, then hand over to the
        server's own shutdown."""
        self.draining = True
        hub = running_hub()
        if hub is not None:  # the process exits: its groups go with its Redis connection
            hub.exiting = True
        try:
            listeners = stop_listening(self.handler) if self.handler else 0
            logger.warning(
                "pushgateway: draining %d WebSocket(s) over %s s (%d listening socket(s) "
                "closed), then shutting down",
                len(self.sockets),
                self.seconds,
                listeners,
            )
            started, cpu = time.monotonic(), time.process_time()
            await self.close_all()
            logger.warning(
                "pushgateway: drained in %.1f s (%.1f s of CPU), %d WebSocket(s) still open",
                time.monotonic() - started,
                time.process_time() - cpu,
                len(self.sockets),
            )
        finally:
            if self.handler is not None:
                self.handler(signum, None)

    async def close_all(self) -> None:
        """Close every socket with SERVICE_RESTART, in random order, evenly over the window;
        then wait (at most LINGER seconds) for them to be gone."""
        loop = asyncio.get_running_loop()
        sockets = list(self.sockets)
        random.shuffle(sockets)
        started, done = loop.time(), 0
        while done < len(sockets):
            elapsed = loop.time() - started
            due = len(sockets)
            if elapsed < self.seconds:
                due = math.ceil(len(sockets) * elapsed / self.seconds)
            for socket in sockets[done:due]:
                socket.restart()
            done = max(done, due)
            if done < len(sockets):
                await asyncio.sleep(TICK)
        deadline = loop.time() + LINGER
        while self.sockets and loop.time() < deadline:
            await asyncio.sleep(TICK)


_drain: Drain | None = None


def get_drain() -> Drain:
    """This process's drain, made on first use (the first WebSocket). Under a server that
    handles SIGTERM itself (daphne, uvicorn, gunicorn's uvicorn worker), and unless
    OPTIONS["DRAIN_SECONDS"] is 0, it is installed to run on SIGTERM before that handler."""
    global _drain
    if _drain is None:
        seconds = get_config()["OPTIONS"].get("DRAIN_SECONDS", DEFAULT_DRAIN_SECONDS)
        drain = Drain(seconds)
        handler = server_shutdown_handler()
        main = threading.current_thread() is threading.main_thread()
        if seconds > 0 and handler is not None and main:
            drain.install(handler, asyncio.get_running_loop())
        _drain = drain
    return _drain
