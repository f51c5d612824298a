"""Token buckets: how fast one connection, and one client address, may subscribe.

Pure (time comes from a clock the caller passes), so the protocol's Session can spend it
without I/O and the WebSocket-over-HTTP view can carry its state between requests.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable

from .constants import MAX_TRACKED_ADDRESSES


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

    def full(self) -> bool:
        """Whether the bucket has refilled to its burst (it then remembers nothing)."""
        self._refill()
        return self.tokens >= self.burst


def address_key(host: object) -> str | None:
    """The key of a client's address for per-address limits: the IPv4 address, or the /64
    network of an IPv6 one (one host is usually given a whole /64); None when there is no
    address (a Unix socket). Any other text (a forged X-Forwarded-For) is its own key, cut
    to 64 characters."""
    if not isinstance(host, str) or not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d, a dual-stack socket's IPv4 client
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class AddressBudgets:
    """A TokenBucket per client address, which outlives the address's connections, in
    bounded memory: at most `size` addresses are remembered. A full bucket remembers nothing
    (a new one would be the same), so past `size` those are forgotten first, then the least
    recently used: forgetting an address only refills its budget early."""

    __slots__ = ("rate", "burst", "clock", "size", "buckets")

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float],
        size: int = MAX_TRACKED_ADDRESSES,
    ) -> None:
        self.rate, self.burst, self.clock, self.size = rate, burst, clock, size
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, address: str) -> TokenBucket:
        """`address`'s bucket, made (and room made for it) if it has none."""
        bucket = self.buckets.get(address)
        if bucket is not None:
            self.buckets.move_to_end(address)
            return bucket
        if len(self.buckets) >= self.size:
            self._forget()
        bucket = self.buckets[address] = TokenBucket(self.rate, self.burst, self.clock)
        return bucket

    def take(self, address: str) -> bool:
        """Spend one of `address`'s tokens; False (spending nothing) when it has none."""
        return self.bucket(address).take()

    def wait(self, address: str) -> float:
        """Seconds until `address` has a token again."""
        bucket = self.buckets.get(address)
        return 0.0 if bucket is None else bucket.wait()

    def _forget(self) -> None:
        # Down to nine tenths at once, so that an attacker with many addresses costs one
        # sweep of the table per size / 10 new ones, not one per address.
        full = [address for address, bucket in self.buckets.items() if bucket.full()]
        for address in full:
            del self.buckets[address]
        while len(self.buckets) > self.size * 9 // 10:
            self.buckets.popitem(last=False)
