"""The pushgateway wire protocol, version 1: pure parsing, validation and encoding.

No sockets, no Django, no clock. The Channels consumer and the WebSocket-over-HTTP view
feed client text frames into a :class:`Session` and carry out the :class:`Reply` it returns,
so both transports speak exactly the same protocol. Bad input is a value (an ``error``
frame in the reply), never an exception that escapes into the server.

See docs/protocol.md for the frames.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

VERSION = 1

CHANNEL_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")
CHANNEL_RULE = "1-100 characters from A-Z, a-z, 0-9, '.', '_' and '-'"
PRIVATE_PREFIX = "private-"

# A subscribe frame with a 100-character channel and a signed token fits in well under 1 KiB.
MAX_FRAME_BYTES = 4096
# A frame this large is not a confused client but abuse: close at once (1009).
MAX_FRAME_BYTES_HARD = 64 * 1024
MAX_SUBSCRIPTIONS = 100
# Errors tolerated on one connection before it is closed with 1008 (policy violation).
MAX_ERRORS = 20

CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
# The client does not read what it is sent (the transport decides when; see channels_app).
CLOSE_TOO_SLOW = 4008

# Error codes (the `code` of an error frame); documented in docs/protocol.md.
INVALID_JSON = "invalid_json"
INVALID_FRAME = "invalid_frame"
UNKNOWN_TYPE = "unknown_type"
INVALID_CHANNEL = "invalid_channel"
FRAME_TOO_LARGE = "frame_too_large"
BINARY_FRAME = "binary_frame"
FORBIDDEN = "forbidden"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
NOT_SUBSCRIBED = "not_subscribed"
UNAVAILABLE = "unavailable"


def channel_error(channel: object) -> str | None:
    """Why `channel` is not a valid channel name, or None if it is."""
    if not isinstance(channel, str):
        return f"channel must be a string of {CHANNEL_RULE}"
    if not CHANNEL_RE.fullmatch(channel):
        return f"invalid channel name {channel[:120]!r}: use {CHANNEL_RULE}"
    return None


def is_private(channel: str) -> bool:
    return channel.startswith(PRIVATE_PREFIX)


def group_name(channel: str) -> str:
    """The channel-layer group that carries `channel` (layers accept names under 100)."""
    name = "pushgateway." + channel
    if len(name) < 100:
        return name
    return "pushgateway.sha1." + hashlib.sha1(channel.encode()).hexdigest()


def _encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def message_frame(channel: str, message_id: str, data: Any) -> str:
    return _encode({"type": "message", "channel": channel, "id": message_id, "data": data})


def subscribed_frame(channel: str) -> str:
    return _encode({"type": "subscribed", "channel": channel})


def unsubscribed_frame(channel: str) -> str:
    return _encode({"type": "unsubscribed", "channel": channel})


def pong_frame() -> str:
    return _encode({"type": "pong"})


def error_frame(code: str, message: str, channel: str | None = None) -> str:
    return _encode({"type": "error", "code": code, "message": message, "channel": channel})


@dataclass
class Reply:
    """What the transport must do after one client frame, in this order.

    `subscribe`/`unsubscribe` name channels to join or leave; the transport sends
    `frames` once those are done, then closes with `close` if it is set.
    """

    frames: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    close: int | None = None


# A function that says whether `token` lets a client subscribe to the private `channel`.
Authorizer = Callable[[str, str], bool]


def _deny_all(channel: str, token: str) -> bool:
    return False


class Session:
    """The protocol state of one client connection: its subscriptions and its errors.

    The session trusts its transport to carry out each Reply; when joining a channel fails
    the transport calls :meth:`subscribe_failed` to undo the bookkeeping.
    """

    __slots__ = ("authorize", "subscriptions", "max_subscriptions", "errors")

    def __init__(
        self,
        authorize: Authorizer = _deny_all,
        subscriptions: set[str] | None = None,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
    ) -> None:
        self.authorize = authorize
        self.subscriptions: set[str] = set(subscriptions or ())
        self.max_subscriptions = max_subscriptions
        self.errors = 0

    def receive_bytes(self, data: bytes) -> Reply:
        return self._error(BINARY_FRAME, "send JSON text frames, not binary frames")

    def receive_text(self, text: str) -> Reply:
        size = len(text.encode("utf-8"))
        if size > MAX_FRAME_BYTES_HARD:
            reply = self._error(FRAME_TOO_LARGE, f"frame of {size} bytes; closing")
            reply.close = CLOSE_TOO_BIG
            return reply
        if size > MAX_FRAME_BYTES:
            return self._error(FRAME_TOO_LARGE, f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
        try:
            frame = json.loads(text)
        except ValueError:
            return self._error(INVALID_JSON, "frame is not valid JSON")
        if not isinstance(frame, dict):
            return self._error(INVALID_FRAME, "frame must be a JSON object")
        kind = frame.get("type")
        if kind == "ping":
            return Reply(frames=[pong_frame()])
        if kind == "subscribe":
            return self._subscribe(frame)
        if kind == "unsubscribe":
            return self._unsubscribe(frame)
        return self._error(
            UNKNOWN_TYPE,
            f"unknown frame type {str(kind)[:40]!r}; use subscribe, unsubscribe or ping",
        )

    def close_all(self) -> list[str]:
        """Forget every subscription (the connection closed); returns the channels to leave."""
        channels, self.subscriptions = sorted(self.subscriptions), set()
        return channels

    def subscribe_failed(self, channel: str) -> str:
        """Undo a subscription the transport could not join; returns the error frame to send."""
        self.subscriptions.discard(channel)
        return error_frame(UNAVAILABLE, "subscribe failed; try again later", channel)

    def _subscribe(self, frame: dict[str, Any]) -> Reply:
        channel = frame.get("channel")
        problem = channel_error(channel)
        if problem:
            return self._error(INVALID_CHANNEL, problem, channel)
        if channel in self.subscriptions:
            return Reply(frames=[subscribed_frame(channel)])
        if is_private(channel):
            token = frame.get("token")
            if not isinstance(token, str) or not self.authorize(channel, token):
                return self._error(FORBIDDEN, "private channel needs a valid token", channel)
        if len(self.subscriptions) >= self.max_subscriptions:
            return self._error(
                TOO_MANY_SUBSCRIPTIONS,
                f"at most {self.max_subscriptions} subscriptions per connection",
                channel,
            )
        self.subscriptions.add(channel)
        return Reply(frames=[subscribed_frame(channel)], subscribe=[channel])

    def _unsubscribe(self, frame: dict[str, Any]) -> Reply:
        channel = frame.get("channel")
        problem = channel_error(channel)
        if problem:
            return self._error(INVALID_CHANNEL, problem, channel)
        if channel not in self.subscriptions:
            return self._error(NOT_SUBSCRIBED, "not subscribed to this channel", channel)
        self.subscriptions.discard(channel)
        return Reply(frames=[unsubscribed_frame(channel)], unsubscribe=[channel])

    def _error(self, code: str, message: str, channel: object = None) -> Reply:
        self.errors += 1
        name = channel if isinstance(channel, str) and not channel_error(channel) else None
        reply = Reply(frames=[error_frame(code, message, name)])
        if self.errors > MAX_ERRORS:
            reply.close = CLOSE_POLICY_VIOLATION
        return reply
