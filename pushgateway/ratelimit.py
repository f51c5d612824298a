"""A token bucket: how fast one connection may subscribe and unsubscribe.

Pure (time comes from a clock the caller passes), so the protocol's Session can spend it
without I/O and the WebSocket-over-HTTP view can carry its state between requests.
"""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    """A budget of `burst` actions at once, refilled at `rate` per second.

    Time comes from `clock` (seconds; any origin), so the protocol stays free of I/O and
    tests can drive it. A clock that goes backwards (another host's wall clock, behind
    Pushpin) refills nothing rather than failing.
    """

    __slots__ = ("rate", "burst", "clock", "tokens", "stamp")

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float],
        tokens: float | None = None,
        stamp: float | None = None,
    ) -> None:
        if not (rate > 0 and burst >= 1):
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, not {rate}, {burst}")
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst if tokens is None else min(max(tokens, 0.0), burst)
        self.stamp = clock() if stamp is None else stamp

    def _refill(self) -> None:
        now = self.clock()
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.stamp = now

    def take(self) -> bool:
        """Spend one token; False (spending nothing) when there is none."""
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def spend(self) -> None:
        """Spend a token if there is one: for actions that are never refused."""
        self._refill()
        self.tokens = max(0.0, self.tokens - 1)

    def wait(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1 - self.tokens) / self.rate)
