"""What the two Fanout backends share: publish items over HTTP, off the request path.

Fanout's publish API (Fastly Fanout, Pushpin, the legacy Fanout.io realm API) takes a JSON
body of `items`, one per hint, and answers for the batch as a whole. Delivery runs in a
BackgroundSender through httpclient.py (timeouts, retries, Retry-After). A batch refused for
an item's sake (400, 413, 422) is halved until the refused items are found: only those are
dropped, the rest are delivered.

Stream positions are kept by the backend, not by Fanout (which stores no state per channel
that a page could compare with): in Redis when OPTIONS["POSITIONS"] names one, which every
publishing and serving process must share; else in this process's memory, which only sees
this process's publishes. A position is advanced once per hint before the first attempt, so
a hint that is given up still moved its channel: pages that reconnect see it, and the sender
publishes a `resync` for the channel once the service answers again.

The `fanout` extra's packages (urllib3, PyJWT, gripcontrol, pubcontrol, fanout) are imported
when a backend is built, not with this module: channels_app imports grip_config from here
in projects that never publish to Fanout.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit

from django.core.checks import CheckMessage, Error

from .. import extras
from ..message import Message
from ..positions import RedisPositions
from ..protocol import Position
from ..sender import BackgroundSender, DeliveryError
from .base import BaseBackend, NetworkOptions, logger

REDIS_SCHEMES = ("redis", "rediss", "unix")
#: The extra that brings what every Fanout backend imports when it is built.
EXTRA = "fanout"


@dataclasses.dataclass(frozen=True)
class HttpPublishOptions(NetworkOptions):
    """The OPTIONS of every Fanout backend: the network options, and where positions live."""

    #: The Redis that every publishing and serving process shares (None: in memory): a URL,
    #: or a primary under Redis Sentinel as channels_redis takes it (`sentinels`,
    #: `master_name`).
    POSITIONS: str | dict | None = None


def is_redis(positions: Any) -> bool:
    """Whether OPTIONS['POSITIONS'] names a Redis: a URL, or Sentinel's primary."""
    if isinstance(positions, dict):
        return bool(positions.get("sentinels")) and bool(positions.get("master_name"))
    return isinstance(positions, str) and urlsplit(positions).scheme in REDIS_SCHEMES


class HttpPublishBackend(BaseBackend):
    """Base class of the Fanout backends: a subclass sets `endpoint`, `iss` and `key` (how
    requests are authorised) and builds one publish item per hint in `item()`."""

    #: Its OPTIONS, with their defaults, besides the common ones (subclasses add theirs).
    options_type = HttpPublishOptions
    options = HttpPublishOptions.names()
    #: What log lines call this backend.
    name = "fanout"
    #: The modules of the `fanout` extra this backend needs (imported when it is built).
    needs: tuple[str, ...] = ("urllib3", "jwt", "pubcontrol")
    endpoint: str
    iss: str | None = None
    key: str | bytes | None = None

    def __init__(self, **options: Any) -> None:
        config = HttpPublishOptions.take(options)
        super().__init__(**options)
        httpclient = self.require()
        self.client = httpclient.PublishClient(
            self.endpoint,
            lambda: httpclient.authorization(self.iss, self.key),
            config,
            on_retry=self._count_retry,
        )
        hosts = [config.POSITIONS] if config.POSITIONS else []
        self.positions = config.position_store(hosts, prefix="pushgateway")
        self.sender = BackgroundSender(
            self.deliver,
            name=self.name,
            prepare=self.prepare,
            repair=self.repair,
            max_queue=config.QUEUE_SIZE,
            on_fork=self._forget_connections,
            coalesce=self.coalesce,
        )
        self.stats = self.sender.stats

    @classmethod
    def require(cls) -> Any:
        """The HTTP client module, once every module this backend needs imports; else
        ImproperlyConfigured saying to install the `fanout` extra."""
        for module in cls.needs:
            extras.require(EXTRA, module, f"pushgateway's {cls.__name__}")
        from . import httpclient

        return httpclient

    def item(self, message: Message, position: Position | None) -> dict:
        """The publish item for one hint at its position."""
        raise NotImplementedError

    def _forget_connections(self) -> None:
        self.client.forget_connections()
        if isinstance(self.positions, RedisPositions):
            self.positions.forget_connections()

    def _count_retry(self, attempt: Any) -> None:
        """Called by urllib3's Retry with its RequestHistory entry of each retry."""
        self.stats["retries"] += 1
        cause = attempt.error or f"HTTP {attempt.status}"
        logger.warning("pushgateway %s: %s from %s; retrying", self.name, cause, attempt.url)

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
        """One publish request; raises DeliveryError when it fails (httpclient.py)."""
        self.client.post(items)

    def send_messages(self, messages) -> None:
        self.sender.submit(messages)

    def flush(self, timeout=None) -> bool:
        return self.sender.flush(timeout)

    def close(self) -> None:
        self.sender.close()
        self.positions.close()
        self.client.close()

    @classmethod
    def check(cls, options: dict[str, Any]) -> list[CheckMessage]:
        errors = super().check(options)
        absent = extras.missing(cls.needs)
        if absent:
            errors.append(
                Error(
                    f"{cls.__name__} needs {', '.join(absent)}, which is not installed.",
                    hint=extras.install_hint(EXTRA),
                    id="pushgateway.E010",
                )
            )
        positions = options.get("POSITIONS")
        if positions and not is_redis(positions):
            errors.append(
                Error(
                    f"OPTIONS['POSITIONS'] {positions!r} is not a Redis URL or a primary "
                    "under Redis Sentinel.",
                    hint="e.g. 'redis://127.0.0.1:6379/0', the Redis every publishing and "
                    "serving process shares, or {'sentinels': [(HOST, PORT), ...], "
                    "'master_name': NAME}; leave it out to keep positions in memory.",
                    id="pushgateway.E009",
                )
            )
        return errors
