"""Delivery off the request path: a bounded queue drained by one daemon thread.

Network backends hand their messages to a BackgroundSender, so a save never waits on a
push service. Memory is bounded (a full queue drops and counts). Time is bounded by the
backend's client library, which times out every attempt and retries with backoff (urllib3's
`Retry` for HTTP, redis-py's `Retry` for Redis): the sender makes one call per batch and
does not retry on top of them. What is given up is counted and logged. Pending messages are
flushed for a few seconds at interpreter exit, so a management command or script that
publishes and exits still delivers.

A hint given up is not forgotten: its channel is remembered, and once delivery works again
the backend's `repair` tells that channel's pages to refetch (a `resync`), so a page is not
left stale by an outage it could not see.

After `os.fork()` (gunicorn with a preloaded app, Celery prefork) the child's senders start
empty, with no thread and fresh connections (`on_fork`): the hints queued before the fork are
the parent's to deliver, and a socket shared by two processes garbles both.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from . import metrics
from .coalescing import Coalescer
from .message import Message

logger = logging.getLogger("pushgateway")

#: No single wait between two attempts is longer than this (seconds).
BACKOFF_MAX = 10.0


class DeliveryError(Exception):
    """Raised by a deliver or repair function that gave up on some or all of a batch.

    `attempts`: how many tries were made (by the client library) before giving up.
    `undelivered`: the indexes in the batch of what was not delivered (None: all of it);
    the rest was. `refused`: the service refused those for good (an HTTP 4xx about the
    items themselves), so sending them again would be refused again.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 1,
        undelivered: Sequence[int] | None = None,
        refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.undelivered = undelivered
        self.refused = refused


def undelivered(batch: Sequence[Any], error: Exception) -> list[Any]:
    """The members of `batch` that `error` says were not delivered."""
    if isinstance(error, DeliveryError) and error.undelivered is not None:
        return [batch[i] for i in error.undelivered]
    return list(batch)


# While hints are waiting to be repaired, try every REPAIR_INTERVAL seconds at first, backing
# off to REPAIR_INTERVAL_MAX while the service stays down (pages hear within that of recovery).
REPAIR_INTERVAL = 1.0
REPAIR_INTERVAL_MAX = 2.0
# Channels remembered for repair; past this many the rest are only counted and logged.
MAX_LOST_CHANNELS = 10_000

_senders: weakref.WeakSet[BackgroundSender] = weakref.WeakSet()

# Put on the queue to make the thread look at its deadlines again (a hint held back).
WAKE = object()


class BackgroundSender:
    """Delivers batches of messages on one daemon thread.

    `prepare(batch)` (optional) runs once per batch and its result is what `deliver` gets;
    `deliver` makes its attempts (through its client library) and raises when it gives up,
    a DeliveryError when it can say more. `repair(channels)` (optional) is called with the
    channels whose hints were given up, until it succeeds. `on_fork` (optional) runs in a
    forked child, to drop the connections it inherited.
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
        exit_timeout: float = 5.0,
        linger: float = 0.01,
        on_exit: Callable[[], None] | None = None,
        on_fork: Callable[[], None] | None = None,
        coalesce: float = 0.0,
    ) -> None:
        self.deliver = deliver
        self.prepare = prepare
        self.repair = repair
        self.name = name
        self.max_batch = max_batch
        self.linger = linger
        self.on_exit = on_exit  # called by the thread itself when close() stops it
        self.on_fork = on_fork
        self.stats: Counter[str] = Counter()
        self.metrics = metrics.get()  # Prometheus, when OPTIONS["METRICS"] is on
        self._queue: queue.Queue[Message | None] = queue.Queue(max_queue)
        # Identical hints within `coalesce` seconds go out once (see coalescing.py).
        self.coalescer = Coalescer(coalesce) if coalesce > 0 else None
        self._start_afresh()
        atexit.register(self.flush, exit_timeout)
        _senders.add(self)

    def _start_afresh(self) -> None:
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._lost: set[str] = set()
        self._repair_interval = REPAIR_INTERVAL
        self._next_repair = 0.0
        self._last_delivery = -1.0

    def submit(self, messages: Sequence[Message]) -> None:
        """Queue messages for delivery; never blocks. A full queue drops and counts."""
        self._ensure_thread()
        if self.coalescer is not None:
            messages = self._coalesce(messages)
        self._enqueue(messages)

    def _coalesce(self, messages: Sequence[Message]) -> list[Message]:
        now = time.monotonic()
        waiting = self.coalescer.next_due()
        now_too = [m for m in messages if self.coalescer.admit(m, now)]
        if len(now_too) < len(messages):
            self.stats["coalesced"] += len(messages) - len(now_too)
            if waiting is None:  # the thread may sleep without a deadline: wake it
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(WAKE)
        return now_too

    def _enqueue(self, messages: Sequence[Message]) -> None:
        for message in messages:
            try:
                self._queue.put_nowait(message)
                self.stats["queued"] += 1
            except queue.Full:
                self.stats["dropped"] += 1
                if self.metrics:
                    self.metrics.dropped.labels("queue_full").inc()
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
        """Wait until everything queued is delivered or given up; False on timeout. Hints
        held back by coalescing go out at once."""
        if self.coalescer is not None:
            self._enqueue(self.coalescer.release())
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
            if not self._lost:  # the first repair waits a moment: the service just failed
                self._next_repair = time.monotonic() + self._repair_interval
            for message in messages:
                if len(self._lost) < MAX_LOST_CHANNELS:
                    self._lost.add(message.channel)
                else:
                    self.stats["unrepairable"] += 1

    def _after_fork_in_child(self) -> None:
        # Only the forking thread survives a fork, and locks other threads held stay held:
        # everything the thread used is made anew. The parent delivers what it queued.
        self._queue = queue.Queue(self._queue.maxsize)
        self._start_afresh()
        self.stats.clear()
        if self.on_fork is not None:
            try:
                self.on_fork()
            except Exception:
                logger.exception("pushgateway %s: resetting connections after fork", self.name)

    def _ensure_thread(self) -> None:
        # A thread that died (an error escaped it) is replaced on the next submit.
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            thread = self._thread
            if thread is None or not thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name=f"pushgateway-{self.name}", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        q = self._queue
        while True:
            try:
                first = q.get(timeout=self._wait())
            except queue.Empty:
                first = WAKE
            else:
                if first is WAKE:
                    q.task_done()
            if first is None:  # close()
                q.task_done()
                break
            batch = [] if first is WAKE else [first]
            # Under load (the last delivery was moments ago) wait a little, so one round
            # trip carries many hints: each costs the publishing process CPU, and with it
            # the GIL its requests wait for. A lone hint goes out at once.
            if batch and time.monotonic() - self._last_delivery < 2 * self.linger:
                time.sleep(self.linger)
            stopping = self._take(batch)
            taken = len(batch)  # what came from the queue, and must be marked done
            if self.coalescer is not None:
                batch += self.coalescer.due(time.monotonic())
            try:
                delivered = self._deliver(batch) if batch else False
                # Delivery works again, or it is time to try: tell the pages of lost hints.
                if self._lost and (delivered or time.monotonic() >= self._next_repair):
                    self._try_repair()
            finally:
                if batch:
                    self._last_delivery = time.monotonic()
                for _ in range(taken):
                    q.task_done()
            if stopping:
                break
        if self.on_exit:
            self.on_exit()

    def _wait(self) -> float | None:
        """How long the thread may sleep: until a repair or a held hint is due."""
        deadlines = []
        if self._lost:
            deadlines.append(max(0.0, self._next_repair - time.monotonic()))
        due = self.coalescer.next_due() if self.coalescer is not None else None
        if due is not None:
            deadlines.append(max(0.0, due - time.monotonic()))
        return min(deadlines) if deadlines else None

    def _take(self, batch: list[Message]) -> bool:
        """Add what else is queued to `batch`, up to max_batch; True if close() was among it."""
        q = self._queue
        while len(batch) < self.max_batch:
            try:
                item = q.get_nowait()
            except queue.Empty:
                return False
            if item is WAKE:
                q.task_done()
            elif item is None:  # close(): deliver what came before it, then stop
                q.task_done()
                return True
            else:
                batch.append(item)
        return False

    def _deliver(self, batch: list[Message]) -> bool:
        """Deliver one batch; False if any of it was given up (counted, logged, remembered)."""
        try:
            self.deliver(self.prepare(batch) if self.prepare else batch)
        except Exception as exc:
            failed = undelivered(batch, exc)
            self.count_sent(len(batch) - len(failed))
            self.stats["failed"] += len(failed)
            if self.metrics:
                refused = isinstance(exc, DeliveryError) and exc.refused
                self.metrics.dropped.labels("rejected" if refused else "failed").inc(len(failed))
            self._lose(failed)
            logger.error("pushgateway %s: %s", self.name, _gave_up(failed, exc))
            return False
        self.count_sent(len(batch))
        return True

    def count_sent(self, count: int) -> None:
        """Count `count` hints as delivered (also those a backend delivers itself)."""
        self.stats["sent"] += count
        if self.metrics:
            self.metrics.sent.inc(count)

    def _try_repair(self) -> None:
        """Tell the pages of channels whose hints were given up to refetch (one call)."""
        with self._lock:
            channels = sorted(self._lost)[: self.max_batch]
        error = None
        try:
            self.repair(channels)
        except Exception as exc:
            error = exc
        failed = set(undelivered(channels, error)) if error else set()
        # A resync the service refuses for good would be refused forever: forget it.
        refused = failed if isinstance(error, DeliveryError) and error.refused else set()
        told = [c for c in channels if c not in failed]
        with self._lock:
            self._lost.difference_update(told)
            self._lost.difference_update(refused)
        if told:
            self.stats["repaired"] += len(told)
            if self.metrics:
                self.metrics.repaired.inc(len(told))
            logger.warning(
                "pushgateway %s: told the pages of %d channel(s) whose hints were dropped to "
                "refetch",
                self.name,
                len(told),
            )
        if refused:
            self.stats["unrepairable"] += len(refused)
            logger.error(
                "pushgateway %s: the service refused a resync on %s: %s",
                self.name,
                ", ".join(sorted(refused)),
                error,
            )
        if failed - refused:
            self._repair_interval = min(self._repair_interval * 2, REPAIR_INTERVAL_MAX)
            logger.debug("pushgateway %s: resync failed: %s", self.name, error)
        else:
            self._repair_interval = REPAIR_INTERVAL
        self._next_repair = time.monotonic() + self._repair_interval


def _gave_up(failed: list[Message], error: Exception) -> str:
    names = sorted({m.channel for m in failed})
    channels = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    if isinstance(error, DeliveryError) and error.refused:
        return f"the service refused {len(failed)} hint(s) on {channels}: {error}"
    attempts = error.attempts if isinstance(error, DeliveryError) else 1
    after = f" after {attempts} attempts" if attempts > 1 else ""
    return f"gave up on {len(failed)} hint(s){after}: {error} (channels: {channels})"


def _after_fork_in_child() -> None:
    for sender in list(_senders):
        sender._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
