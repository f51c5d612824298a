"""Process tuning for a server holding many long-lived sockets (applied by channels_app.asgi).

Two costs that grow with the number of open sockets and buy nothing:

- **Full garbage collections.** Every socket keeps objects alive for hours, and Python's
  cyclic collector walks all of them on every full collection, long enough at tens of
  thousands of sockets for handshakes to time out. ``SocketGc`` freezes them out of the
  collector's reach once a burst of accepts has settled (see its docstring).
- **Framing every hint again for every socket.** The hub builds a hint's frame once
  (channels_app.frames) and the consumer writes those bytes to each socket's transport
  where pushgateway.adapters knows the server (``frames``; off: ASGI `send` for all).
- **Debug lines formatted and thrown away.** autobahn pretty-prints its configuration for
  a debug log line on every connection, before the logger drops it;
  ``pushgateway.adapters.lazy_autobahn_debug_formatting`` formats it only if it is written.

``apply()`` turns on what ``PUSHGATEWAY_TUNING`` names: ``all`` (the default), ``off``, or
a comma list of ``gc``, ``frames`` and ``autobahn``. Measured effects are in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time

logger = logging.getLogger("pushgateway.tuning")

KNOBS = ("gc", "frames", "autobahn")
# A thaw that finds fewer objects in cycles than this per closed socket was not worth it.
MIN_CYCLE_OBJECTS = 10


def running_tasks() -> int:
    """Tasks on the running loop: about one per open connection under every ASGI server."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return 0


class SocketGc:
    """Freeze long-lived objects out of the cyclic GC after bursts of new sockets.

    ``socket_opened()`` is called for every new WebSocket; it costs a counter increment and,
    once per burst, a timer. The freeze runs when no socket has opened for ``quiet``
    seconds, or at once every ``burst`` sockets so a long burst never piles up a large
    unfrozen heap. What survives a full collection is long-lived by definition, so it is
    frozen too (a gc.callbacks hook): the next full collection walks only what came since.

    Objects freed by reference counting (almost all of a closed socket) are still freed
    when frozen; what a closed socket leaves in reference cycles (under daphne: its
    protocol, HTTP channel, transport, request, deferreds) only a full collection frees.
    So once a burst has settled and at least half as many sockets have closed since the
    last full collection as are open now (``thaw_ratio``), it thaws: one full collection,
    paid once per turnover of the sockets instead of every few seconds. Open connections
    are counted as the running loop's tasks.
    """

    def __init__(
        self,
        quiet: float = 1.0,
        burst: int = 1000,
        thaw_ratio: float = 0.5,
        min_closed: int = 1000,
        count_open=running_tasks,
    ):
        self.quiet = quiet
        self.burst = burst
        self.thaw_ratio = self.base_thaw_ratio = thaw_ratio
        self.min_closed = min_closed
        self.count_open = count_open
        self.opened = 0  # sockets opened since the last freeze
        self.opened_since_thaw = 0
        self.open_at_thaw = 0
        self.last_opened = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_loop: asyncio.AbstractEventLoop | None = None
        self.freezes = 0
        self.thaws = 0

    def install(self) -> None:
        if self._after_collection not in gc.callbacks:
            gc.callbacks.append(self._after_collection)

    def uninstall(self) -> None:
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)

    def _after_collection(self, phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()  # every object left is alive: only sockets closed later leave cycles

    def socket_opened(self) -> None:
        self.opened += 1
        self.last_opened = time.monotonic()
        if self.opened >= self.burst:
            self.freeze()  # and still look again once the burst has settled
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside a server's loop: the burst rule still holds
            return
        if self.timer is None or self.timer_loop is not loop:
            self.timer_loop = loop
            self.timer = loop.call_later(self.quiet, self._settled)

    def _settled(self) -> None:
        self.timer = None
        idle = time.monotonic() - self.last_opened
        if idle < self.quiet:  # still arriving: look again when they may have stopped
            self.timer = self.timer_loop.call_later(self.quiet - idle, self._settled)
        else:
            self.freeze(settled=True)

    def closed_since_thaw(self) -> int:
        """Sockets closed since the last full collection, estimated from the open count."""
        return self.opened_since_thaw - (self.count_open() - self.open_at_thaw)

    def freeze(self, settled: bool = False) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.opened_since_thaw += self.opened
        self.opened = 0
        if settled and self.closed_since_thaw() >= max(
            self.min_closed, self.thaw_ratio * self.count_open()
        ):
            self.thaw()
            return
        # Young garbage first (cheap: only generations 0 and 1), so it is not frozen.
        gc.collect(1)
        gc.freeze()
        self.freezes += 1

    def thaw(self) -> None:
        """One full collection over everything, to reclaim cycles of closed sockets.

        A server whose closed sockets leave little in cycles (uvicorn, unlike daphne) gains
        little from it, so when a thaw finds under ``MIN_CYCLE_OBJECTS`` per closed socket
        the next one waits four times as many closes (up to 64 turnovers); finding them
        again restores the ratio.
        """
        closed = max(1, self.closed_since_thaw())
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.thaws += 1
        self.opened_since_thaw = 0
        self.open_at_thaw = self.count_open()
        if collected < MIN_CYCLE_OBJECTS * closed:
            self.thaw_ratio = min(self.thaw_ratio * 4, 64.0)
        else:
            self.thaw_ratio = self.base_thaw_ratio
        logger.info(
            "pushgateway: full GC collected %d objects in %.0f ms; %d frozen",
            collected,
            (time.perf_counter() - started) * 1000,
            gc.get_freeze_count(),
        )


socket_gc: SocketGc | None = None
#: Write hints' prepared frames to transports (on unless apply() is told otherwise).
frames = True


def socket_opened() -> None:
    """Called by the ASGI application for each new WebSocket or stream."""
    if socket_gc is not None:
        socket_gc.socket_opened()


def apply(knobs: str | None = None) -> set[str]:
    """Turn on the tuning knobs named (default: ``$PUSHGATEWAY_TUNING`` or ``all``)."""
    global socket_gc, frames
    if knobs is None:
        knobs = os.environ.get("PUSHGATEWAY_TUNING", "all")
    wanted = set(KNOBS) if knobs == "all" else {k for k in knobs.split(",") if k and k != "off"}
    unknown = wanted - set(KNOBS)
    if unknown:
        raise ValueError(f"PUSHGATEWAY_TUNING: unknown {sorted(unknown)}; use all, off or {KNOBS}")
    if "gc" in wanted and socket_gc is None:
        socket_gc = SocketGc()
        socket_gc.install()
    frames = "frames" in wanted
    if "autobahn" in wanted:
        from pushgateway.adapters import lazy_autobahn_debug_formatting

        lazy_autobahn_debug_formatting()
    return wanted
