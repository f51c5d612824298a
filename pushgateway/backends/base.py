"""The backend contract: the methods a new backend implements, and the options they share.

A backend subclasses BaseBackend and implements `send_messages` (and `flush`, `close` when it
queues or holds connections). The limits and common options are every backend's; the network
options (NetworkOptions) are those of every backend that publishes over the network, each
default written here once.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from django.core.checks import CheckMessage, Error

from .. import redisretry
from ..coalescing import DEFAULT_WINDOW
from ..message import Message
from ..positions import DEFAULT_TTL, MemoryPositions, RedisPositions
from ..protocol import Position

logger = logging.getLogger("pushgateway")


class Limits(NamedTuple):
    """The limits every backend accepts in OPTIONS (documented in docs/settings.md)."""

    #: Bytes of a hint's data serialised as JSON; publish() raises HintTooLarge past it.
    MAX_DATA_BYTES: int = 4096
    #: Subscribes and unsubscribes per second per connection, after a burst of...
    SUBSCRIBE_RATE: float = 10.0
    #: ...this many at once (a page's whole set of channels fits).
    SUBSCRIBE_BURST: int = 100
    #: Channel-layer groups (Redis SUBSCRIBEs) one server process joins at most; a subscribe
    #: that would join one more is refused `unavailable`.
    MAX_CHANNELS: int = 10_000
    #: Joins of channels the process does not serve yet, per second per client address
    #: (across all its connections and reconnects), after a burst of...
    ADDRESS_JOIN_RATE: float = 50.0
    #: ...this many at once.
    ADDRESS_JOIN_BURST: int = 500
    #: Open WebSockets per client address in one process; None: no limit.
    MAX_CONNECTIONS_PER_ADDRESS: int | None = None

    @classmethod
    def problems(cls, options: dict[str, Any]) -> list[str]:
        """What is wrong with the limits among `options` (other names are not looked at)."""
        problems = []
        for name in sorted(set(cls._fields) & set(options)):
            value, whole = options[name], name not in _RATES
            if value is None and name in _OPTIONAL:
                continue
            kind = int if whole else int | float
            if isinstance(value, bool) or not isinstance(value, kind):
                problems.append(
                    f"{name} must be {'a whole' if whole else 'a'} number, not {value!r}"
                )
            elif not (value >= 1 if whole else value > 0):
                problems.append(
                    f"{name} must be {'at least 1' if whole else 'positive'}, not {value!r}"
                )
        return problems


#: Limits that are rates (any positive number; the others are whole numbers).
_RATES = ("SUBSCRIBE_RATE", "ADDRESS_JOIN_RATE")
#: Limits that None turns off.
_OPTIONAL = ("MAX_CONNECTIONS_PER_ADDRESS",)


#: Options every backend accepts that are seconds: name -> what 0 means (None: 0 is refused).
SECONDS_OPTIONS = {
    "COALESCE": "off",
    "DRAIN_SECONDS": "no drain, the server's own shutdown",
    "WATCH_TIMEOUT": None,
}


def option_problems(options: dict[str, Any]) -> list[str]:
    """What is wrong with the options every backend accepts (docs/settings.md)."""
    problems = Limits.problems(options)
    for name, zero in SECONDS_OPTIONS.items():
        value = options.get(name, 1)
        number = not isinstance(value, bool) and isinstance(value, int | float)
        if not number or not math.isfinite(value) or value < 0 or (value == 0 and zero is None):
            rule = f">= 0 (0: {zero})" if zero else "> 0"
            problems.append(f"{name} must be seconds {rule}, not {value!r}")
    return problems


#: Options every backend accepts: they are the project's, not the backend's (docs/settings.md).
COMMON_OPTIONS = ("PRIVATE", "TOKEN_MAX_AGE", "METRICS", *SECONDS_OPTIONS, *Limits._fields)

#: No single wait between two attempts is longer than this (seconds).
BACKOFF_MAX = 10.0


@dataclasses.dataclass(frozen=True)
class NetworkOptions:
    """The OPTIONS of every backend that publishes over the network (docs/settings.md).

    A backend family adds its own options in a subclass; `take` reads them all out of the
    OPTIONS a backend is given.
    """

    #: Seconds each attempt at a publish (or a position read) may take.
    TIMEOUT: float = 5.0
    #: More attempts after a connection error or timeout...
    RETRIES: int = 3
    #: ...after waits of 2, 4, 8... x this many seconds (at most BACKOFF_MAX).
    BACKOFF_FACTOR: float = 0.3
    #: Hints waiting for the sender thread at most; more are dropped (and repaired).
    QUEUE_SIZE: int = 10_000
    #: Seconds a channel's position outlives its last publish or read.
    POSITION_TTL: float = DEFAULT_TTL

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def take(cls, options: dict[str, Any]) -> Any:
        """The options of this type among `options`, removed from it (defaults for the rest)."""
        return cls(**{name: options.pop(name) for name in cls.names() if name in options})

    @property
    def attempts(self) -> int:
        return self.RETRIES + 1

    def redis_retry(self, *, for_asyncio: bool = False) -> Any:
        """redis-py's Retry for these options (see redisretry)."""
        return redisretry.redis_retry(
            self.RETRIES, self.BACKOFF_FACTOR, BACKOFF_MAX, for_asyncio=for_asyncio
        )

    def position_store(self, hosts: Sequence[str | dict], prefix: str) -> Any:
        """The position store: in Redis on `hosts` (shared by every process), or in this
        process's memory when there are none."""
        if not hosts:
            return MemoryPositions(self.POSITION_TTL)
        retry = self.redis_retry() if self.RETRIES else None
        return RedisPositions(
            hosts, prefix=prefix, ttl=self.POSITION_TTL, timeout=self.TIMEOUT, retry=retry
        )


class BaseBackend:
    """Base class for pushgateway backends.

    A backend takes messages (one hint on one channel each) and delivers them to
    subscribers. `send_messages` must never block on the network or raise because a
    push service is down: network backends queue and deliver in the background.
    """

    #: Option names this backend accepts in PUSHGATEWAY["OPTIONS"], besides the limits
    #: (Limits' fields), which every backend accepts.
    options: Sequence[str] = ()

    #: The limits in force (defaults until __init__ reads OPTIONS).
    limits: Limits = Limits()

    #: Where the backend keeps stream positions (a store from pushgateway.positions), or
    #: None if it keeps none: then every position reads as unknown and pages refetch
    #: whenever they may have missed something.
    positions: Any = None

    def __init__(self, **options: Any) -> None:
        #: Delivery counters ("sent", "dropped", "failed", ...) for monitoring and tests.
        self.stats: Counter[str] = Counter()
        unknown = sorted(set(options) - set(self.options) - set(COMMON_OPTIONS))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown options {unknown}")
        problems = option_problems(options)
        if problems:
            raise ValueError(f"{type(self).__name__}: {'; '.join(problems)}")
        self.limits = Limits(**{k: v for k, v in options.items() if k in Limits._fields})
        #: Seconds within which identical hints go out once (network backends; coalescing.py).
        self.coalesce = options.get("COALESCE", DEFAULT_WINDOW)

    def send_messages(self, messages: Sequence[Message]) -> None:
        """Deliver (or queue for delivery) these messages."""
        raise NotImplementedError("subclasses of BaseBackend must provide send_messages()")

    async def asend_messages(self, messages: Sequence[Message]) -> None:
        """Async variant; the default calls send_messages, which must not block."""
        self.send_messages(messages)

    def validate_channels(self, channels: Iterable[str]) -> None:
        """Raise if this backend cannot carry `channels` (valid names) as their names
        promise; publish() asks before it queues a hint. Every backend here but the legacy
        realm one carries them all."""

    def read_positions(self, channels: Iterable[str]) -> dict[str, Position | None]:
        """The current positions of `channels`; None for each that cannot be read now."""
        channels = list(channels)
        if self.positions is None or not channels:
            return dict.fromkeys(channels)
        try:
            return self.positions.read(channels)
        except Exception as exc:
            logger.warning("pushgateway: cannot read positions (%r); pages will refetch", exc)
            return dict.fromkeys(channels)

    async def aread_positions(self, channels: Iterable[str]) -> dict[str, Position | None]:
        """read_positions() for the event loop."""
        channels = list(channels)
        if self.positions is None or not channels:
            return dict.fromkeys(channels)
        try:
            return await self.positions.aread(channels)
        except Exception as exc:
            logger.warning("pushgateway: cannot read positions (%r); pages will refetch", exc)
            return dict.fromkeys(channels)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued messages are delivered or given up; False on timeout."""
        return True

    def client_config(self) -> dict[str, Any]:
        """Settings the browser module needs for this backend (rendered as JSON): the
        WebSocket, falling back to the stream (Server-Sent Events) where it is refused."""
        return {"transport": "auto"}

    def close(self) -> None:
        """Release resources (threads, connections); called when settings change."""

    @classmethod
    def check_deployment(cls, options: dict[str, Any]) -> list[CheckMessage]:
        """What `manage.py check --deploy` should say about these OPTIONS (nothing here)."""
        return []

    @classmethod
    def check(cls, options: dict[str, Any]) -> list[CheckMessage]:
        """System-check errors for these OPTIONS (unknown names and bad limits by default)."""
        errors = [
            Error(
                f"PUSHGATEWAY OPTIONS: {problem}.",
                hint="See the limits in docs/settings.md.",
                id="pushgateway.E004",
            )
            for problem in option_problems(options)
        ]
        unknown = sorted(set(options) - set(cls.options) - set(COMMON_OPTIONS))
        if unknown:
            valid = sorted({*cls.options, *COMMON_OPTIONS})
            errors.append(
                Error(
                    f"Unknown PUSHGATEWAY OPTIONS {unknown} for {cls.__module__}.{cls.__name__}.",
                    hint=f"Valid options: {valid}.",
                    id="pushgateway.E004",
                )
            )
        return errors
