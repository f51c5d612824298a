"""The protocol's facts, each defined once: codes, limits, names and the browser's defaults.

Python imports them from here. The browser module cannot import Python, so it carries them as
a generated table (`browser_table()`, written into static/js/pushgateway.js between its
``facts:begin``/``facts:end`` markers by ``./dev facts``); tests/unit/test_constants.py fails
when the two disagree. docs/protocol.md describes every value.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any

#: The wire protocol's version (docs/protocol.md).
VERSION = 2


class CloseCode(enum.IntEnum):
    """Close codes the server sends. In the application range, which every ASGI server can
    send (daphne refuses 1008 and 1009 themselves): 4000 + the RFC 6455 code each stands for
    (4029: + HTTP's 429 Too Many Requests, which RFC 6455 has no code for)."""

    #: The connection caused more than MAX_ERRORS errors.
    POLICY_VIOLATION = 4008
    #: A frame over MAX_FRAME_BYTES_HARD.
    MESSAGE_TOO_BIG = 4009
    #: The server is restarting (draining): reconnect soon, with jitter, elsewhere.
    SERVICE_RESTART = 4012
    #: The client does not read what it is sent (over MAX_PENDING_BYTES waiting).
    TRY_AGAIN_LATER = 4013
    #: The client's address has OPTIONS["MAX_CONNECTIONS_PER_ADDRESS"] sockets open already.
    TOO_MANY_CONNECTIONS = 4029


#: Closes after which reconnecting at once would only be refused again: the browser module
#: waits its longest backoff.
POLICY_CLOSES = (
    CloseCode.POLICY_VIOLATION,
    CloseCode.MESSAGE_TOO_BIG,
    CloseCode.TOO_MANY_CONNECTIONS,
)

#: RFC 6455's "service restart", which uvicorn sends to every socket when it shuts down.
RFC_SERVICE_RESTART = 1012
#: Closes that say the server is going away on purpose: the browser module reconnects after a
#: short random wait and does not climb its backoff.
RESTART_CLOSES = (RFC_SERVICE_RESTART, CloseCode.SERVICE_RESTART)


class ErrorCode(enum.StrEnum):
    """The `code` of an error frame."""

    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_CHANNEL = "invalid_channel"
    INVALID_POSITION = "invalid_position"
    FRAME_TOO_LARGE = "frame_too_large"
    BINARY_FRAME = "binary_frame"
    NOT_SUBSCRIBED = "not_subscribed"
    FORBIDDEN = "forbidden"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    UNAVAILABLE = "unavailable"
    RATE_LIMITED = "rate_limited"

    @property
    def is_refusal(self) -> bool:
        """An answer about capacity or authorisation, not misbehaviour: it does not count
        toward MAX_ERRORS."""
        return self in REFUSALS


REFUSALS = frozenset(
    {
        ErrorCode.FORBIDDEN,
        ErrorCode.TOO_MANY_SUBSCRIPTIONS,
        ErrorCode.UNAVAILABLE,
        ErrorCode.RATE_LIMITED,
    }
)

# Channel names: what channel layers accept in a group name, with room for our prefix.
MAX_CHANNEL_LENGTH = 100
CHANNEL_PATTERN = f"[A-Za-z0-9._-]{{1,{MAX_CHANNEL_LENGTH}}}"
CHANNEL_RE = re.compile(CHANNEL_PATTERN)
CHANNEL_RULE = f"1-{MAX_CHANNEL_LENGTH} characters from A-Z, a-z, 0-9, '.', '_' and '-'"
#: Channels whose names start with it need a signed token to subscribe.
PRIVATE_PREFIX = "private-"

# A subscribe frame with a 100-character channel, a position and a signed token fits in
# well under 1 KiB.
MAX_FRAME_BYTES = 4096
# A frame this large is not a confused client but abuse: close at once.
MAX_FRAME_BYTES_HARD = 64 * 1024
#: Errors (bad input, not refusals) tolerated on one connection before it is closed.
MAX_ERRORS = 20
MAX_EPOCH_LENGTH = 32
#: What a JavaScript number holds exactly.
MAX_SEQ = 2**53 - 1
#: Subscriptions of one WebSocket to the self-hosted layer.
MAX_SUBSCRIPTIONS = 100
#: Subscriptions of one connection through Pushpin or Fastly Fanout: Pushpin's default
#: connection_subscription_max, past which the proxy ignores a subscribe.
MAX_PROXY_SUBSCRIPTIONS = 20
#: Events in one WebSocket-over-HTTP request, and bytes in its body: past either the view
#: reads nothing and closes the connection (MESSAGE_TOO_BIG). A page's burst of subscribes
#: and pings is a few dozen events of well under MAX_FRAME_BYTES each.
MAX_PROXY_EVENTS = 64
MAX_PROXY_BODY_BYTES = 4 * MAX_FRAME_BYTES_HARD
#: Characters of the signed connection state a GRIP proxy carries back: MAX_PROXY_SUBSCRIPTIONS
#: private names of 100 random characters, each with a 32-character epoch and a token, take
#: about 4,000; longer is refused unread (Pushpin itself resets a client request with more
#: than about 8 KiB of headers; the state travels between the proxy and the view only).
MAX_PROXY_STATE_CHARS = 8 * 1024
#: Seconds between requests a GRIP proxy makes for a connection with private subscriptions,
#: when nothing else made one (`Keep-Alive-Interval`, Pushpin's shortest): each request checks
#: their tokens again, so an expired or revoked one ends within this time even on a client
#: that never sends anything (the browser module pings every 25 s).
PROXY_KEEP_ALIVE_SECONDS = 20
#: Channels one request to the positions view may ask about.
MAX_POSITIONS_PER_REQUEST = 100
#: A POST body to the positions view at most: 100 names with their tokens fit in 32 KiB.
MAX_POSITIONS_BODY_BYTES = 64 * 1024
#: A body that opens a stream (its subscribe frames, with tokens) at most, and the frames in it:
#: past either the request is refused with 400. A page's subscriptions fit well within both.
MAX_STREAM_BODY_BYTES = 64 * 1024
MAX_STREAM_FRAMES = 2 * MAX_SUBSCRIPTIONS
#: Seconds between the keep-alive comments of an idle stream (proxies close idle responses,
#: often after 30-60 s); the browser takes STREAM_IDLE_FACTOR times as long without a byte for
#: a dead stream.
STREAM_KEEPALIVE_SECONDS = 15
STREAM_IDLE_FACTOR = 2.5
#: Channels one Lua script reads positions of: the periodic check of every joined channel
#: (and any other large read) goes in chunks this size, so no single call holds Redis (or the
#: event loop parsing its answer) for long, however many channels a process has joined.
POSITION_READ_CHUNK = 200
#: Client addresses whose subscribe budgets a server process remembers (about 200 bytes
#: each); past it, those with a full budget are forgotten first, then the least recently seen.
MAX_TRACKED_ADDRESSES = 10_000
#: Unsent bytes a socket may hold before it is closed as too slow (about 1,500 hints).
MAX_PENDING_BYTES = 256 * 1024

#: The code the browser module closes its own socket with when no pong came in time.
NO_PONG_CLOSE = 4000

# Where the browser finds the server (channels_app.urls and channels_app.routing).
WEBSOCKET_PATH = "/ws/pushgateway/"
POSITIONS_PATH = "/pushgateway/positions/"
#: The streaming HTTP transport (Server-Sent Events framing), opened with a POST.
STREAM_PATH = "/pushgateway/stream/"
#: A stream's answer says so when the page should check positions soon after its
#: `subscribed` frames (behind a GRIP proxy, a hint published while the proxy took the
#: stream's channels over can be lost on the way; nothing else on a held stream checks).
STREAM_RECHECK_HEADER = "X-PushGateway-Recheck"
#: The id of the element {% pushgateway_script %} renders the browser's configuration into.
CONFIG_ELEMENT_ID = "pushgateway-config"
#: The attributes of a live fragment, an element that follows a channel ({% pushgateway_fragment
#: %} renders them; the browser module reads them): the channel, the position and the token
#: its view rendered (pushgateway.watch()), and an optional throttle in milliseconds.
FRAGMENT_ATTRIBUTES = {
    "channel": "data-pushgateway-channel",
    "since": "data-pushgateway-since",
    "token": "data-pushgateway-token",
    "throttle": "data-pushgateway-throttle",
}
#: The DOM event the browser module dispatches on a fragment whose channel changed (it
#: bubbles; `detail` is what a subscribe() callback receives).
FRAGMENT_EVENT = "pushgateway:change"

# How a page's requests say which page made them, so the hints they cause skip that page.
CLIENT_HEADER = "X-PushGateway-Client"
CLIENT_FIELD = "pushgateway_client"
CLIENT_ID_PATTERN = "[0-9A-Za-z_-]{1,64}"
#: Hints carry not the writing page's client id (anyone who reads a hint could replay it) but
#: its tag: the SHA-256 of the id, as hex, cut to this many characters. Only the page that
#: knows the id recognises its own hints; nobody can make a request the server tags so.
CLIENT_TAG_LENGTH = 32

#: Bayeux channel segments hold no '.', and channel names never hold this: the legacy realm
#: API publishes "a.b" as "a~b" (pushgateway.backends.realm, the browser's Faye transport).
BAYEUX_DOT = "~"

#: The browser module's defaults that the template tag may override (milliseconds).
CLIENT_DEFAULTS = {
    "url": WEBSOCKET_PATH,
    "positionsUrl": POSITIONS_PATH,
    "streamUrl": STREAM_PATH,
    "throttle": 500,  # between callbacks of one subscription
    "pollDown": 5000,  # between position checks while a channel is not live
    "pollUp": 300000,  # between position checks while it is
}


def browser_facts() -> dict[str, Any]:
    """What the browser module needs of the facts above, as its FACTS table holds them."""
    return {
        "version": VERSION,
        "closeCodes": {code.name: code.value for code in CloseCode},
        "policyCloses": [code.value for code in POLICY_CLOSES],
        "restartCloses": [int(code) for code in RESTART_CLOSES],
        "noPongClose": NO_PONG_CLOSE,
        "errorCodes": {code.name: code.value for code in ErrorCode},
        "channelPattern": CHANNEL_PATTERN,
        "privatePrefix": PRIVATE_PREFIX,
        "maxPositionsPerRequest": MAX_POSITIONS_PER_REQUEST,
        "streamIdle": int(STREAM_KEEPALIVE_SECONDS * STREAM_IDLE_FACTOR * 1000),
        "streamRecheckHeader": STREAM_RECHECK_HEADER,
        "clientHeader": CLIENT_HEADER,
        "clientField": CLIENT_FIELD,
        "clientTagLength": CLIENT_TAG_LENGTH,
        "configElement": CONFIG_ELEMENT_ID,
        "fragmentAttributes": FRAGMENT_ATTRIBUTES,
        "fragmentEvent": FRAGMENT_EVENT,
        "bayeuxDot": BAYEUX_DOT,
        "defaults": CLIENT_DEFAULTS,
    }


BEGIN, END = "// facts:begin", "// facts:end"


def _js(value: Any) -> str:
    """`value` as a JavaScript literal (object keys unquoted: they are identifiers)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_js(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, separators=(", ", ": "))


def browser_table() -> str:
    """The lines between the markers in the browser module: FACTS, a key a line."""
    lines = [
        "  // Generated from pushgateway/constants.py by `./dev facts`; do not edit.",
        "  const FACTS = {",
    ]
    for key, value in browser_facts().items():
        line = f"    {key}: {_js(value)},"
        if len(line) > 100 and isinstance(value, dict):
            items = [f"      {k}: {_js(v)}," for k, v in value.items()]
            line = "\n".join([f"    {key}: {{", *items, "    },"])
        lines.append(line)
    return "\n".join([*lines, "  };", ""])


def with_table(source: str) -> str:
    """`source` (the browser module) with its FACTS table made anew."""
    head, begin, rest = source.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not (begin and end):
        raise ValueError(f"the browser module has no {BEGIN} ... {END} block")
    return f"{head}{BEGIN}\n{browser_table()}  {END}{tail}"
