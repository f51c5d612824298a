"""The pushgateway wire protocol, version 2: pure parsing, validation and encoding.

No sockets, no Django, no clock. The Channels consumer and the WebSocket-over-HTTP view
feed client text frames into a :class:`Session` and carry out the :class:`Reply` it returns,
so both transports speak exactly the same protocol. Bad input is a value (an ``error``
frame in the reply), never an exception that escapes into the server.

Version 2 adds stream positions: every ``message`` carries the channel's position, a
``subscribe`` may say the last position the page knows (``since``), and ``subscribed``
answers with the current one and whether the page is ``stale``. Version 1 clients ignore
the new fields and are served unchanged.

See docs/protocol.md for the frames.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .constants import (
    CHANNEL_RE,
    CHANNEL_RULE,
    MAX_EPOCH_LENGTH,
    MAX_ERRORS,
    MAX_FRAME_BYTES,
    MAX_FRAME_BYTES_HARD,
    MAX_SEQ,
    MAX_STREAM_BODY_BYTES,
    MAX_STREAM_FRAMES,
    MAX_SUBSCRIPTIONS,
    PRIVATE_PREFIX,
    CloseCode,
    ErrorCode,
)
from .ratelimit import TokenBucket


class Position(NamedTuple):
    """A channel's stream position: `seq` counts publishes within one `epoch`."""

    epoch: str
    seq: int

    def as_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seq": self.seq}

    def is_behind(self, other: Position) -> bool:
        """Whether a page at this position has missed what `other` records."""
        return self.epoch != other.epoch or self.seq < other.seq

    @classmethod
    def from_json(cls, value: object) -> Position | None:
        """The position a client sent, or None if `value` is not one."""
        if not isinstance(value, dict):
            return None
        epoch, seq = value.get("epoch"), value.get("seq")
        if not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_LENGTH:
            return None
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
            return None
        return cls(epoch, seq)


def has_news(known: Position | None, position: Position | None) -> bool:
    """Whether `position` records hints that a page (or hub) at `known` has not seen."""
    return position is not None and (known is None or known.is_behind(position))


#: The position of a channel with nothing published (that the position store remembers).
START = Position("", 0)


def channel_error(channel: object) -> str | None:
    """Why `channel` is not a valid channel name, or None if it is."""
    if not isinstance(channel, str):
        return f"channel must be a string of {CHANNEL_RULE}"
    if not CHANNEL_RE.fullmatch(channel):
        return f"invalid channel name {channel[:120]!r}: use {CHANNEL_RULE}"
    return None


def is_private(channel: str) -> bool:
    return channel.startswith(PRIVATE_PREFIX)


def _encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


# A frame that carries a position is built as a head (the frame without its closing brace)
# plus the position, so a publisher can serialise everything but the position before it
# knows it. The Redis script of backends/pubsub.py appends it in the same round trip that
# assigns it, with string.format and these two formats, so Python and Lua build one text.

#: A position as JSON, from the epoch as a JSON string and the seq.
POSITION_FORMAT = '{"epoch":%s,"seq":%d}'
#: A frame from its head and its position as JSON.
POSITIONED_FORMAT = '%s,"position":%s}'


def _position_json(position: Position | None) -> str:
    if position is None:
        return "null"
    return POSITION_FORMAT % (_encode(position.epoch), position.seq)


def message_head(
    channel: str,
    message_id: str,
    data: Any,
    client: str | None = None,
    *,
    data_json: str | None = None,
) -> str:
    """The message frame without its position; `data_json` is `data` already encoded."""
    frame = {"type": "message", "channel": channel, "id": message_id}
    if client is not None:
        # The tag of the page whose request caused it (middleware.client_tag): that page
        # recognises it and skips its own hint; nobody else learns its id.
        frame["client"] = client
    if data_json is None:
        data_json = _encode(data)
    return _encode(frame)[:-1] + ',"data":' + data_json


def resync_head(channel: str) -> str:
    return _encode({"type": "resync", "channel": channel})[:-1]


def with_position(head: str, position: Position | None) -> str:
    return POSITIONED_FORMAT % (head, _position_json(position))


def message_frame(channel: str, message_id: str, data: Any, position: Position) -> str:
    return with_position(message_head(channel, message_id, data), position)


def resync_frame(channel: str, position: Position | None) -> str:
    """Hints on `channel` may have been lost on the way: the page refetches."""
    return with_position(resync_head(channel), position)


def is_stale(since: Position | None, position: Position | None) -> bool:
    """Whether a page that knows `since` must refetch: it knows nothing, the position
    cannot be checked, or it differs."""
    return since is None or position is None or since != position


def subscribed_frame(channel: str, position: Position | None, since: Position | None) -> str:
    stale = "true" if is_stale(since, position) else "false"
    head = _encode({"type": "subscribed", "channel": channel})[:-1]
    return f'{head},"position":{_position_json(position)},"stale":{stale}}}'


def unsubscribed_frame(channel: str) -> str:
    return _encode({"type": "unsubscribed", "channel": channel})


def pong_frame() -> str:
    return _encode({"type": "pong"})


def error_frame(code: ErrorCode, message: str, channel: str | None = None, **extra: Any) -> str:
    frame = {"type": "error", "code": code, "message": message, "channel": channel, **extra}
    return _encode(frame)


class Subscribe(NamedTuple):
    """A subscription the transport must carry out: join `channel` (unless `joined`),
    read its position and answer with :func:`subscribed_frame`."""

    channel: str
    since: Position | None
    joined: bool = False


@dataclass
class Reply:
    """What the transport must do after one client frame, in this order.

    Join each of `subscribe` and answer it with a `subscribed` frame (it needs the current
    position, which only the transport can read), leave each of `unsubscribe`, send
    `frames`, then close with `close` if it is set. A transport that can should then read
    nothing more from the client for `hold` seconds: it went past its budget and was told
    when to come back (`retry_after`), so what it sends meanwhile can wait.
    """

    frames: list[str] = field(default_factory=list)
    subscribe: list[Subscribe] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    close: int | None = None
    hold: float = 0.0


# A function that says whether `token` lets a client subscribe to the private `channel`.
Authorizer = Callable[[str, str], bool]


def _deny_all(channel: str, token: str) -> bool:
    return False


class Session:
    """The protocol state of one client connection: its subscriptions and its errors.

    The session trusts its transport to carry out each Reply; when joining a channel fails
    the transport calls :meth:`subscribe_failed` to undo the bookkeeping. `churn`, when
    given, is the connection's budget of joins and leaves (each costs the server a layer or
    proxy subscription): a subscribe past it is refused with `rate_limited`.
    """

    __slots__ = ("authorize", "subscriptions", "max_subscriptions", "errors", "churn", "tokens")

    def __init__(
        self,
        authorize: Authorizer = _deny_all,
        subscriptions: set[str] | None = None,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
        churn: TokenBucket | None = None,
    ) -> None:
        self.authorize = authorize
        self.subscriptions: set[str] = set(subscriptions or ())
        self.max_subscriptions = max_subscriptions
        self.errors = 0
        self.churn = churn
        #: The token each private subscription was authorised with, checked again by expire().
        self.tokens: dict[str, str] = {}

    def receive_bytes(self, data: bytes) -> Reply:
        return self._error(ErrorCode.BINARY_FRAME, "send JSON text frames, not binary frames")

    def receive_text(self, text: str) -> Reply:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_FRAME_BYTES_HARD:
            reply = self._error(ErrorCode.FRAME_TOO_LARGE, f"frame of {size} bytes; closing")
            reply.close = CloseCode.MESSAGE_TOO_BIG
            return reply
        if size > MAX_FRAME_BYTES:
            return self._error(
                ErrorCode.FRAME_TOO_LARGE, f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}"
            )
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):  # 4 KiB of '[' is too deep for json
            return self._error(ErrorCode.INVALID_JSON, "frame is not valid JSON")
        if not isinstance(frame, dict):
            return self._error(ErrorCode.INVALID_FRAME, "frame must be a JSON object")
        kind = frame.get("type")
        if kind == "ping":
            return Reply(frames=[pong_frame()])
        if kind == "subscribe":
            return self._subscribe(frame)
        if kind == "unsubscribe":
            return self._unsubscribe(frame)
        return self._error(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown frame type {_show(kind)}; use subscribe, unsubscribe or ping",
        )

    def close_all(self) -> list[str]:
        """Forget every subscription (the connection closed); returns the channels to leave."""
        channels, self.subscriptions = sorted(self.subscriptions), set()
        self.tokens.clear()
        return channels

    def subscribe_failed(self, channel: str) -> str:
        """Undo a subscription the transport could not join; returns the error frame to send."""
        return self.subscribe_refused(
            channel, ErrorCode.UNAVAILABLE, "subscribe failed; try again later"
        )

    def subscribe_refused(self, channel: str, code: ErrorCode, message: str, **extra: Any) -> str:
        """Undo a subscription the transport refuses for what it would cost the server (a
        refusal: it does not count as an error); returns the error frame to send."""
        self.subscriptions.discard(channel)
        self.tokens.pop(channel, None)
        return error_frame(code, message, channel, **extra)

    def _subscribe(self, frame: dict[str, Any]) -> Reply:
        channel = frame.get("channel")
        problem = channel_error(channel)
        if problem:
            return self._error(ErrorCode.INVALID_CHANNEL, problem, channel)
        since = None
        if frame.get("since") is not None:
            since = Position.from_json(frame["since"])
            if since is None:
                return self._error(
                    ErrorCode.INVALID_POSITION,
                    f"since must be {{epoch: string of at most {MAX_EPOCH_LENGTH} characters, "
                    "seq: integer >= 0} or absent",
                    channel,
                )
        # The token first, also for a channel the connection has: "subscribed" tells its
        # position, which no one may learn of a private channel without a valid token.
        if is_private(channel):
            token = frame.get("token")
            if not isinstance(token, str) or not self.authorize(channel, token):
                return self._refuse(
                    ErrorCode.FORBIDDEN, "private channel needs a valid token", channel
                )
        if channel in self.subscriptions:
            if is_private(channel):  # a fresh token keeps the subscription going longer
                self.tokens[channel] = frame["token"]
            return Reply(subscribe=[Subscribe(channel, since, joined=True)])
        if len(self.subscriptions) >= self.max_subscriptions:
            return self._refuse(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                f"at most {self.max_subscriptions} subscriptions per connection",
                channel,
            )
        if self.churn is not None and not self.churn.take():
            # A refusal, not misbehaviour: a page that navigates a lot is slowed, never
            # disconnected, and a refused subscribe costs the server nothing.
            wait = math.ceil(self.churn.wait() * 10) / 10
            reply = self._refuse(
                ErrorCode.RATE_LIMITED,
                f"more than {self.churn.burst:g} subscribes and unsubscribes at once "
                f"or {self.churn.rate:g} per second; try again in {wait:g} s",
                channel,
                retry_after=wait,
            )
            reply.hold = wait
            return reply
        self.subscriptions.add(channel)
        if is_private(channel):
            self.tokens[channel] = frame["token"]
        return Reply(subscribe=[Subscribe(channel, since)])

    def expire(self) -> Reply:
        """End the private subscriptions whose tokens no longer verify (expired, or signed with
        a key since dropped from SECRET_KEY_FALLBACKS): each is left and answered `forbidden`
        (a refusal: the page asks for a fresh token). The transport calls it periodically
        (the hub every VERIFY_SECONDS; the GRIP view on every request of the connection)."""
        ended = [
            channel for channel, token in self.tokens.items() if not self.authorize(channel, token)
        ]
        reply = Reply(unsubscribe=ended)
        for channel in ended:
            del self.tokens[channel]
            self.subscriptions.discard(channel)
            message = "the token expired or was revoked; subscribe again with a fresh one"
            reply.frames.append(error_frame(ErrorCode.FORBIDDEN, message, channel))
        return reply

    def _unsubscribe(self, frame: dict[str, Any]) -> Reply:
        channel = frame.get("channel")
        problem = channel_error(channel)
        if problem:
            return self._error(ErrorCode.INVALID_CHANNEL, problem, channel)
        if channel not in self.subscriptions:
            return self._error(ErrorCode.NOT_SUBSCRIBED, "not subscribed to this channel", channel)
        self.subscriptions.discard(channel)
        self.tokens.pop(channel, None)
        if self.churn is not None:
            # Never refused (that would keep sending what the client asked to stop), but
            # paid for: subscribe-unsubscribe churn runs at half the subscribe rate.
            self.churn.spend()
        return Reply(frames=[unsubscribed_frame(channel)], unsubscribe=[channel])

    def _refuse(self, code: ErrorCode, message: str, channel: str, **extra: Any) -> Reply:
        return Reply(frames=[error_frame(code, message, channel, **extra)])

    def _error(self, code: ErrorCode, message: str, channel: object = None) -> Reply:
        self.errors += 1
        name = channel if isinstance(channel, str) and not channel_error(channel) else None
        reply = Reply(frames=[error_frame(code, message, name)])
        if self.errors > MAX_ERRORS:
            reply.close = CloseCode.POLICY_VIOLATION
        return reply


# The streaming HTTP transport: the request that opens a stream carries the client frames a
# socket would send first, and the stream carries the server frames in Server-Sent Events
# framing (docs/protocol.md). A JSON frame holds no line break, so it is one `data:` line.

#: What an idle stream sends every STREAM_KEEPALIVE_SECONDS: an SSE comment.
SSE_KEEPALIVE = ":\n\n"


def sse_event(frame: str) -> str:
    """A server frame as one Server-Sent Event."""
    return f"data: {frame}\n\n"


def sse_close(code: int) -> str:
    """The last event of a stream the server ends, with the close code a socket would get."""
    return f'event: close\ndata: {{"code":{int(code)}}}\n\n'


def stream_frames(body: bytes) -> list[str] | str:
    """The client frames (as text, for Session.receive_text) of a request that opens a
    stream, `{"frames": [FRAME, ...]}`; or why the body is not one (answered 400)."""
    if len(body) > MAX_STREAM_BODY_BYTES:
        return f"a body of at most {MAX_STREAM_BODY_BYTES} bytes"
    try:
        data = json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return "a body of JSON"
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list):
        return 'a JSON object {"frames": [{"type": "subscribe", ...}, ...]}'
    if len(frames) > MAX_STREAM_FRAMES:
        return f"at most {MAX_STREAM_FRAMES} frames"
    return [_encode(frame) for frame in frames]


def _show(value: object) -> str:
    """A short, printable rendering of a client's value for an error message."""
    return ascii(value if isinstance(value, str | int | float | bool | None) else type(value))[:40]
