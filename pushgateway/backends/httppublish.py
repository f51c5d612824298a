"""What the two Fanout backends share: publish items over HTTP, off the request path.

Fanout's publish API (Fastly Fanout, Pushpin, the legacy Fanout.io realm API) takes a JSON
body of `items`, one per hint, and answers for the batch as a whole. Delivery runs in a
BackgroundSender over one pooled urllib3 connection (keep-alive): every attempt has
TIMEOUT, and urllib3's Retry retries connection errors, timeouts and 429/500/502/503/504
RETRIES times with backoff (0, 2, 4... x BACKOFF_FACTOR seconds), or after the Retry-After
the service asked for (at most RETRY_AFTER_MAX). A batch refused for an item's sake (400, 413,
422) is halved until the refused items are found: only those are dropped, the rest are
delivered.

Stream positions are kept by the backend, not by Fanout (which stores no state per channel
that a page could compare with): in Redis when OPTIONS["POSITIONS"] names one, which every
publishing and serving process must share; else in this process's memory, which only sees
this process's publishes. A position is advanced once per hint before the first attempt, so
a hint that is given up still moved its channel: pages that reconnect see it, and the sender
publishes a `resync` for the channel once the service answers again.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import jwt
import urllib3
from django.core.checks import Error
from urllib3.util.retry import RequestHistory, Retry

from ..message import Message
from ..positions import DEFAULT_TTL, MemoryPositions, RedisPositions
from ..protocol import Position
from ..sender import BACKOFF_MAX, BackgroundSender, DeliveryError
from .base import BaseBackend, logger

RETRY_STATUSES = (429, 500, 502, 503, 504)
# A refusal that may be about some items of a batch only: halve the batch to find them.
ITEM_STATUSES = (400, 413, 422)
#: The longest Retry-After honoured (seconds); a longer one is cut to this.
RETRY_AFTER_MAX = 30
REDIS_SCHEMES = ("redis", "rediss", "unix")


class ReportingRetry(Retry):
    """urllib3's Retry, telling `on_retry` about each retry it makes (to count and log),
    and waiting at most RETRY_AFTER_MAX for a Retry-After (urllib3 2.7's `retry_after_max`,
    for older urllib3 2 too)."""

    def __init__(self, *args: Any, on_retry=None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_retry = on_retry

    def new(self, **kwargs: Any) -> ReportingRetry:
        kwargs.setdefault("on_retry", self.on_retry)
        return super().new(**kwargs)

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), RETRY_AFTER_MAX)

    def increment(self, *args: Any, **kwargs: Any) -> ReportingRetry:
        retry = super().increment(*args, **kwargs)  # raises when no retry is left
        if self.on_retry is not None:
            self.on_retry(retry.history[-1])
        return retry


class HttpPublishBackend(BaseBackend):
    """Base class of the Fanout backends: a subclass sets `endpoint`, `iss` and `key` (how
    requests are authorised) and builds one publish item per hint in `item()`."""

    options = ("TIMEOUT", "RETRIES", "BACKOFF_FACTOR", "QUEUE_SIZE", "POSITIONS", "POSITION_TTL")
    #: What log lines call this backend.
    name = "fanout"
    endpoint: str
    iss: str | None = None
    key: str | bytes | None = None

    def __init__(
        self,
        TIMEOUT=5.0,
        RETRIES=3,
        BACKOFF_FACTOR=0.3,
        QUEUE_SIZE=10_000,
        POSITIONS=None,
        POSITION_TTL=DEFAULT_TTL,
        **rest,
    ):
        super().__init__(**rest)
        self.timeout = TIMEOUT
        self.retries = RETRIES
        self.retry = ReportingRetry(
            total=RETRIES,
            backoff_factor=BACKOFF_FACTOR,
            backoff_max=BACKOFF_MAX,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=["POST"],
            respect_retry_after_header=True,
            raise_on_status=False,  # the last answer is kept, to say what it was
            on_retry=self._count_retry,
        )
        if POSITIONS:
            retrying = {"timeout": TIMEOUT, "retries": RETRIES, "backoff_factor": BACKOFF_FACTOR}
            self.positions = RedisPositions(
                [POSITIONS], prefix="pushgateway", ttl=POSITION_TTL, **retrying
            )
        else:
            self.positions = MemoryPositions(POSITION_TTL)
        self.pool = self._new_pool()
        self.sender = BackgroundSender(
            self.deliver,
            name=self.name,
            prepare=self.prepare,
            repair=self.repair,
            max_queue=QUEUE_SIZE,
            on_fork=self._forget_connections,
        )
        self.stats = self.sender.stats

    def item(self, message: Message, position: Position | None) -> dict:
        """The publish item for one hint at its position."""
        raise NotImplementedError

    def _new_pool(self) -> urllib3.PoolManager:
        # One connection, kept alive: only the sender thread publishes.
        return urllib3.PoolManager(
            maxsize=1, retries=self.retry, timeout=urllib3.Timeout(total=self.timeout)
        )

    def _forget_connections(self) -> None:
        self.pool = self._new_pool()  # the parent's sockets stay the parent's
        if isinstance(self.positions, RedisPositions):
            self.positions.forget_connections()

    def _count_retry(self, attempt: RequestHistory) -> None:
        self.stats["retries"] += 1
        cause = attempt.error or f"HTTP {attempt.status}"
        logger.warning("pushgateway %s: %s from %s; retrying", self.name, cause, attempt.url)

    def authorization(self) -> str | None:
        if self.iss:
            claims = {"iss": self.iss, "exp": int(time.time()) + 3600}
            return "Bearer " + jwt.encode(claims, self.key, algorithm="HS256")
        if self.key:
            key = self.key.decode() if isinstance(self.key, bytes) else self.key
            return "Bearer " + key
        return None

    def prepare(self, messages: list[Message]) -> list[dict]:
        """The publish items for a batch, with each hint's new position (once per hint)."""
        channels = [m.channel for m in messages]
        try:
            positions = self.positions.advance(channels)
        except Exception as exc:  # publish anyway: pages resync on a hint without position
            logger.warning("pushgateway %s: cannot advance positions (%s)", self.name, exc)
            positions = [None] * len(channels)
        return [self.item(m, p) for m, p in zip(messages, positions, strict=True)]

    def repair(self, channels: list[str]) -> None:
        """Publish a resync at the current position of each channel whose hint was lost."""
        positions = self.read_positions(channels)
        self.deliver([self.item(Message(c, resync=True), positions[c]) for c in channels])

    def deliver(self, items: list[dict]) -> None:
        """Publish `items`; a batch refused for an item's sake is halved until the refused
        items are found. Raises DeliveryError saying which items were not delivered."""
        refused: list[int] = []
        reasons: list[str] = []
        parts = [range(len(items))]
        while parts:
            part = parts.pop()
            try:
                self.post([items[i] for i in part])
            except DeliveryError as exc:
                if not exc.refused:  # the service or the way to it failed: stop here
                    rest = [i for p in parts for i in p]
                    exc.undelivered = sorted([*refused, *part, *rest])
                    raise
                if len(part) > 1:
                    middle = len(part) // 2
                    parts += [part[middle:], part[:middle]]  # the first half first
                else:
                    refused.append(part[0])
                    reasons.append(str(exc))
        if refused:
            reason = "; ".join(dict.fromkeys(reasons))
            raise DeliveryError(reason, undelivered=refused, refused=True)

    def post(self, items: list[dict]) -> None:
        """One publish request (urllib3 retries it); raises DeliveryError when it fails."""
        headers = {"Content-Type": "application/json"}
        auth = self.authorization()
        if auth:
            headers["Authorization"] = auth
        body = json.dumps({"items": items}).encode()
        try:
            response = self.pool.request("POST", self.endpoint, body=body, headers=headers)
        except urllib3.exceptions.MaxRetryError as exc:
            raise DeliveryError(
                f"{self.endpoint}: {exc.reason}", attempts=self.retries + 1
            ) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise DeliveryError(f"{self.endpoint}: {exc}") from exc
        if response.status < 300:
            return
        detail = response.data[:200].decode("utf-8", "replace").strip()
        history = response.retries.history if response.retries else ()
        raise DeliveryError(
            f"HTTP {response.status} from {self.endpoint}: {detail}",
            attempts=len(history) + 1,
            refused=response.status in ITEM_STATUSES,
        )

    def send_messages(self, messages) -> None:
        self.sender.submit(messages)

    def flush(self, timeout=None) -> bool:
        return self.sender.flush(timeout)

    def close(self) -> None:
        self.sender.close()
        self.positions.close()
        self.pool.clear()

    @classmethod
    def check(cls, options):
        errors = super().check(options)
        positions = options.get("POSITIONS")
        if positions and not (
            isinstance(positions, str) and urlsplit(positions).scheme in REDIS_SCHEMES
        ):
            errors.append(
                Error(
                    f"OPTIONS['POSITIONS'] {positions!r} is not a Redis URL.",
                    hint="e.g. 'redis://127.0.0.1:6379/0', the Redis every publishing and "
                    "serving process shares; leave it out to keep positions in memory.",
                    id="pushgateway.E009",
                )
            )
        return errors
