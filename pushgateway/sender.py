"""Delivery off the request path: a bounded queue drained by one daemon thread.

Network backends hand their messages to a BackgroundSender, so a save never waits on a
push service. Memory is bounded (a full queue drops and counts), time is bounded (each
attempt is the backend's to time out; retries back off), and what is given up is counted
and logged. Pending messages are flushed for a few seconds at interpreter exit, so a
management command or script that publishes and exits still delivers.

A hint given up is not forgotten: its channel is remembered, and once delivery works again
the backend's `repair` tells that channel's pages to refetch (a `resync`), so a page is not
left stale by an outage it could not see.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from .message import Message

logger = logging.getLogger("pushgateway")


class PermanentDeliveryError(Exception):
    """Raised by a deliver function for a failure that retrying cannot fix (e.g. HTTP 403)."""


def backoff_delays(retries: int, factor: float) -> list[float]:
    """Sleeps before each retry, urllib3-style: 0, 2*factor, 4*factor, ..."""
    return [0.0 if n == 0 else factor * 2**n for n in range(retries)]


# While hints are waiting to be repaired, try every REPAIR_INTERVAL seconds at first, backing
# off to REPAIR_INTERVAL_MAX while the service stays down (pages hear within that of recovery).
REPAIR_INTERVAL = 1.0
REPAIR_INTERVAL_MAX = 2.0
# Channels remembered for repair; past this many the rest are only counted and logged.
MAX_LOST_CHANNELS = 10_000


class BackgroundSender:
    """Delivers batches of messages on one daemon thread.

    `prepare(batch)` (optional) runs once per batch and its result is what `deliver` gets on
    each attempt; `repair(channels)` (optional) is called with the channels whose hints
    were given up, until it succeeds.
    """

    def __init__(
        self,
        deliver: Callable[[Any], None],
        *,
        name: str,
        prepare: Callable[[list[Message]], Any] | None = None,
        repair: Callable[[list[str]], None] | None = None,
        max_queue: int = 10_000,
        max_batch: int = 100,
        retries: int = 3,
        backoff_factor: float = 0.3,
        exit_timeout: float = 5.0,
        linger: float = 0.002,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.deliver = deliver
        self.prepare = prepare
        self.repair = repair
        self.name = name
        self.max_batch = max_batch
        self.delays = backoff_delays(retries, backoff_factor)
        self.linger = linger
        self.on_exit = on_exit  # called by the thread itself when close() stops it
        self._last_delivery = -1.0
        self.stats: Counter[str] = Counter()
        self._queue: queue.Queue[Message | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._lost: set[str] = set()
        self._repair_interval = REPAIR_INTERVAL
        atexit.register(self.flush, exit_timeout)

    def submit(self, messages: Sequence[Message]) -> None:
        """Queue messages for delivery; never blocks. A full queue drops and counts."""
        self._ensure_thread()
        for message in messages:
            try:
                self._queue.put_nowait(message)
                self.stats["queued"] += 1
            except queue.Full:
                self.stats["dropped"] += 1
                self._lose([message])
                if self.stats["dropped"] % 1000 != 1:  # a flood logs a line per 1000, not each
                    continue
                logger.error(
                    "pushgateway %s: queue full (%d), dropped hint for %r (%d dropped so far)",
                    self.name,
                    self._queue.maxsize,
                    message.channel,
                    self.stats["dropped"],
                )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued is delivered or given up; False on timeout."""
        q = self._queue
        with q.all_tasks_done:
            return q.all_tasks_done.wait_for(lambda: q.unfinished_tasks == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
        atexit.unregister(self.flush)

    @property
    def lost(self) -> list[str]:
        """Channels whose hints were given up and whose pages are not told yet."""
        with self._lock:
            return sorted(self._lost)

    def _lose(self, messages: Sequence[Message]) -> None:
        if self.repair is None:
            return
        with self._lock:
            for message in messages:
                if len(self._lost) < MAX_LOST_CHANNELS:
                    self._lost.add(message.channel)
                else:
                    self.stats["unrepairable"] += 1

    def _ensure_thread(self) -> None:
        # After a fork only the forking thread survives, and a thread that died must be
        # replaced: start a fresh one.
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            return
        with self._lock:
            thread = self._thread
            if thread is None or self._pid != os.getpid() or not thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name=f"pushgateway-{self.name}", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self._repair_interval if self._lost else None)
            except queue.Empty:
                self._try_repair()
                continue
            if first is None:
                self._queue.task_done()
                break
            # Under load (the last delivery was moments ago) wait a little, so one round
            # trip carries many hints: each costs the publishing process CPU, and with it
            # the GIL its requests wait for. A lone hint goes out at once.
            if time.monotonic() - self._last_delivery < 2 * self.linger:
                time.sleep(self.linger)
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:  # close(): deliver what came before it, then stop
                    self._queue.task_done()
                    stopping = True
                    break
                batch.append(item)
            try:
                if self._deliver_with_retries(batch) and self._lost:
                    self._try_repair()
            finally:
                self._last_delivery = time.monotonic()
                for _ in batch:
                    self._queue.task_done()
        if self.on_exit:
            self.on_exit()

    def _try_repair(self) -> None:
        """Tell the pages of channels whose hints were given up to refetch (one attempt)."""
        with self._lock:
            channels = sorted(self._lost)[: self.max_batch]
        try:
            self.repair(channels)
        except Exception as exc:
            self._repair_interval = min(self._repair_interval * 2, REPAIR_INTERVAL_MAX)
            logger.debug("pushgateway %s: resync failed: %s", self.name, exc)
            return
        self._repair_interval = REPAIR_INTERVAL
        with self._lock:
            self._lost.difference_update(channels)
        self.stats["repaired"] += len(channels)
        logger.warning(
            "pushgateway %s: told the pages of %d channel(s) whose hints were dropped to refetch",
            self.name,
            len(channels),
        )

    def _deliver_with_retries(self, batch: list[Message]) -> bool:
        """Deliver one batch, retrying; False if it was given up."""
        prepared = None
        for attempt in range(len(self.delays) + 1):
            try:
                if prepared is None:
                    prepared = self.prepare(batch) if self.prepare else batch
                self.deliver(prepared)
            except PermanentDeliveryError as exc:
                self.stats["failed"] += len(batch)
                logger.error("pushgateway %s: dropped %d hint(s): %s", self.name, len(batch), exc)
                self._lose(batch)
                return False
            except Exception as exc:
                if attempt == len(self.delays):
                    self.stats["failed"] += len(batch)
                    logger.error(
                        "pushgateway %s: gave up on %d hint(s) after %d attempts: %s",
                        self.name,
                        len(batch),
                        attempt + 1,
                        exc,
                    )
                    self._lose(batch)
                    return False
                delay = self.delays[attempt]
                self.stats["retries"] += 1
                logger.warning(
                    "pushgateway %s: delivery failed (%s); retry %d in %.1fs",
                    self.name,
                    exc,
                    attempt + 1,
                    delay,
                )
                time.sleep(delay)
            else:
                self.stats["sent"] += len(batch)
                return True
        return False
