"""What one client address may cost a server process: its open sockets and its joins.

A connection's own budget (SUBSCRIBE_RATE, in the protocol's Session) refills when it
reconnects; these do not. Keyed by the address the server puts in the ASGI scope
(`scope["client"]`): behind a proxy that is the proxy's, unless the server is told to
believe X-Forwarded-For (docs/security.md, "What one client may cost").
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from pushgateway import metrics
from pushgateway.backends import get_backend
from pushgateway.ratelimit import AddressBudgets, address_key


class Admission:
    """The per-address limits of one server process (one event loop)."""

    def __init__(self, limits, metrics=None, clock=time.monotonic) -> None:
        self.max_connections: int | None = limits.MAX_CONNECTIONS_PER_ADDRESS
        self.joins = AddressBudgets(limits.ADDRESS_JOIN_RATE, limits.ADDRESS_JOIN_BURST, clock)
        self.metrics = metrics
        #: Open sockets per address (only addresses with one: bounded by the open sockets).
        self.connections: Counter[str] = Counter()

    def connect(self, address: str | None) -> bool:
        """Count a socket of `address` in; False (counting nothing) when it has
        MAX_CONNECTIONS_PER_ADDRESS open already."""
        if address is None:
            return True
        if self.max_connections is not None and self.connections[address] >= self.max_connections:
            if self.metrics:
                self.metrics.connections_refused.labels("address_limit").inc()
            return False
        self.connections[address] += 1
        return True

    def disconnect(self, address: str | None) -> None:
        if address is not None:
            self.connections[address] -= 1
            if self.connections[address] <= 0:
                del self.connections[address]

    def join(self, address: str | None) -> float | None:
        """Spend one of `address`'s joins: None when it may, else the seconds until it may
        again. A connection without an address is limited by its own budget only."""
        if address is None or self.joins.take(address):
            if self.metrics:
                self.metrics.addresses.set(len(self.joins.buckets))
            return None
        if self.metrics:
            self.metrics.subscribes_refused.labels("address_budget").inc()
        return self.joins.wait(address)


def client_address(scope: dict) -> str | None:
    """The per-address key of an ASGI connection scope's client (address_key)."""
    client = scope.get("client")
    try:
        return address_key(client[0]) if client else None
    except (TypeError, IndexError, KeyError):
        return None


_admissions: dict[asyncio.AbstractEventLoop, Admission] = {}


def get_admission() -> Admission:
    """The Admission of the running event loop (one per server process), with the backend's
    limits."""
    loop = asyncio.get_running_loop()
    admission = _admissions.get(loop)
    if admission is None:
        for old in [old for old in _admissions if old.is_closed()]:
            del _admissions[old]
        admission = _admissions[loop] = Admission(get_backend().limits, metrics.get())
    return admission
