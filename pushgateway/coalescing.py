"""Identical hints in quick succession go out once per process.

A bulk import, or a hot object saved by many requests, publishes the same hint (the same
channel and data) over and over; every page would refetch for each. Within a window, the
first goes out at once and the rest wait: at the end of the window one more goes out (the
latest, so a page ends up with the final state), and the window starts again. A steady
stream of the same hint therefore goes out once per window, and nothing waits longer than
one window.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from .message import Message

#: Seconds of the window (OPTIONS["COALESCE"]; 0 turns coalescing off).
DEFAULT_WINDOW = 0.5


class Coalescer:
    def __init__(self, window: float) -> None:
        self.window = window
        self._sent: dict[tuple[str, str], float] = {}  # when each key last went out
        self._held: dict[tuple[str, str], Message] = {}
        self._lock = threading.Lock()
        self._next_prune = 0.0

    def admit(self, message: Message, now: float) -> bool:
        """Whether `message` goes out now; if not, it waits for the end of its window."""
        key = message.key
        with self._lock:
            last = self._sent.get(key)
            if last is None or now - last >= self.window:
                self._sent[key] = now
                return True
            held = self._held.get(key)
            if held is not None and held.client != message.client:
                # Caused by different pages' requests: no page may skip it as its own.
                message = replace(message, client=None)
            self._held[key] = message
            return False

    def next_due(self) -> float | None:
        """When the earliest held hint is due (monotonic time), or None."""
        with self._lock:
            if not self._held:
                return None
            return min(self._sent[key] for key in self._held) + self.window

    def due(self, now: float) -> list[Message]:
        """The held hints whose window has ended; each starts a new window."""
        with self._lock:
            out = []
            for key in [k for k in self._held if now - self._sent[k] >= self.window]:
                out.append(self._held.pop(key))
                self._sent[key] = now
            if now >= self._next_prune:  # forget windows that ended with nothing held
                self._next_prune = now + self.window
                for key in [k for k, t in self._sent.items() if now - t >= self.window]:
                    if key not in self._held:
                        del self._sent[key]
            return out

    def release(self) -> list[Message]:
        """Every held hint, at once (the process is flushing or exiting)."""
        with self._lock:
            held, self._held = list(self._held.values()), {}
            return held
