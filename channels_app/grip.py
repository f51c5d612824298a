"""The WebSocket-over-HTTP endpoint used behind Pushpin or Fastly Fanout.

The proxy holds the browser's WebSocket and POSTs its events to this view as
`application/websocket-events`. The view runs them through the same protocol Session as
the Channels consumer: replies go back `m:`-prefixed, joins and leaves become GRIP
control messages (`c:`), and the connection's subscriptions, the positions it was last told
and its error count travel in `Meta-*` headers, since each request may reach a different
process.

Hints travel from the publisher through the proxy straight to the browser, never through
this view, so the view cannot see one go missing. It checks instead: on every request of a
connection (the browser module pings soon after subscribing and every 25 s) it reads the
positions of the connection's channels and sends `resync` where one moved past what the
connection was last told. A page that received the hints already has that position and
ignores the resync; one that missed them (published while the proxy was applying the
subscription, or dropped on the way) refetches.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from typing import Any

import jwt
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt

from pushgateway.backends import get_backend, get_config
from pushgateway.backends.fanout import grip_config
from pushgateway.constants import MAX_ERRORS, MAX_PROXY_SUBSCRIPTIONS
from pushgateway.protocol import (
    Position,
    Reply,
    Session,
    channel_error,
    has_news,
    resync_frame,
    subscribed_frame,
)
from pushgateway.ratelimit import TokenBucket
from pushgateway.tokens import check_token

from .consumer import origin_allowed

logger = logging.getLogger("pushgateway")

CONTENT_TYPE = "application/websocket-events"


def parse_events(body: bytes) -> list[tuple[str, bytes | None]]:
    """Split a websocket-events body into (type, content) pairs."""
    events, pos = [], 0
    while pos < len(body):
        end = body.index(b"\r\n", pos)
        kind, _, size = body[pos:end].decode("ascii").partition(" ")
        pos = end + 2
        content = None
        if size:
            length = int(size, 16)
            content = body[pos : pos + length]
            if len(content) != length or body[pos + length : pos + length + 2] != b"\r\n":
                raise ValueError("truncated event")
            pos += length + 2
        events.append((kind, content))
    return events


def encode_events(events: list[tuple[str, bytes | None]]) -> bytes:
    out = bytearray()
    for kind, content in events:
        if content is None:
            out += kind.encode() + b"\r\n"
        else:
            out += f"{kind} {len(content):x}\r\n".encode() + content + b"\r\n"
    return bytes(out)


def verify_grip_sig(token: str | None) -> bool:
    """Whether `token` is a valid Grip-Sig for the GRIP_URL in PUSHGATEWAY's OPTIONS."""
    grip_url = get_config()["OPTIONS"].get("GRIP_URL")
    if not token or not grip_url:
        return False
    try:
        key, algorithms = verification_key(grip_url)
    except ValueError as exc:  # nothing to verify with: refuse rather than trust
        logger.error("pushgateway: cannot verify Grip-Sig: %s", exc)
        return False
    grip = grip_config(grip_url)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            options={"require": ["exp"], "verify_iss": bool(grip.get("verify_iss"))},
            issuer=grip.get("verify_iss"),
        )
    except jwt.PyJWTError:
        return False
    return bool(claims)


@functools.lru_cache(maxsize=16)
def verification_key(grip_url: str) -> tuple[Any, list[str]]:
    """The key Grip-Sig is verified with and the one algorithm its type allows: HS256 for
    a shared secret (Pushpin's sig_key), ES256 or RS256 for a public key (Fastly Fanout's
    verify-key). Never more than one: a token "signed" with HMAC over a public key, which
    is no secret, must not pass."""
    grip = grip_config(grip_url)
    key = grip.get("verify_key") or grip.get("key")
    if not key:
        raise ValueError("GRIP_URL has no key= or verify-key= (system check pushgateway.E008)")
    raw = key if isinstance(key, bytes) else key.encode()
    if not raw.lstrip().startswith(b"-----BEGIN"):
        return key, ["HS256"]
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    public = load_pem_public_key(raw)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public, ["ES256"]
    if isinstance(public, rsa.RSAPublicKey):
        return public, ["RS256"]
    raise ValueError(f"verify-key is a {type(public).__name__}; use an EC or RSA public key")


def control(kind: str, channel: str) -> tuple[str, bytes]:
    return "TEXT", b"c:" + json.dumps({"type": kind, "channel": channel}).encode()


# Meta-* headers come from the proxy, which stores what this view set; they are parsed as
# strictly as client input all the same (an int() of "²" or of 5,000 digits raises).
SEQ_RE = re.compile(r"[0-9]{1,16}")
CHURN_RE = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,3})?)@([0-9]{1,12}(?:\.[0-9]{1,3})?)")


def parse_positions(header: str) -> dict[str, Position]:
    """Meta-Pos: `channel=epoch.seq` pairs, comma-separated (names hold no '=' or ',')."""
    positions = {}
    for item in header.split(","):
        channel, _, value = item.partition("=")
        epoch, _, seq = value.partition(".")
        if SEQ_RE.fullmatch(seq):
            position = Position.from_json({"epoch": epoch, "seq": int(seq)})
            if position is not None and not channel_error(channel):
                positions[channel] = position
    return positions


def parse_count(header: str) -> int:
    """Meta-Errors: the connection's error count so far."""
    return min(int(header), MAX_ERRORS + 1) if SEQ_RE.fullmatch(header) else 0


def parse_churn(header: str, rate: float, burst: int) -> TokenBucket:
    """Meta-Churn: `tokens@unix time`, the connection's subscribe budget when last seen
    (full on a connection's first request, or if the header is unreadable)."""
    match = CHURN_RE.fullmatch(header)
    if match is None:
        return TokenBucket(rate, burst, time.time)
    return TokenBucket(rate, burst, time.time, float(match[1]), float(match[2]))


def format_churn(bucket: TokenBucket) -> str:
    return f"{bucket.tokens:.3f}@{bucket.stamp:.3f}"


def format_positions(positions: dict[str, Position | None]) -> str:
    return ",".join(f"{c}={p.epoch}.{p.seq}" for c, p in sorted(positions.items()) if p)


class Connection:
    """One proxied WebSocket for the length of one request: its Session and positions."""

    def __init__(self, request: HttpRequest) -> None:
        headers = request.headers
        self.backend = get_backend()
        limits = self.backend.limits
        subscriptions = {c for c in headers.get("Meta-Subs", "").split(",") if not channel_error(c)}
        self.session = Session(
            authorize=check_token,
            subscriptions=subscriptions,
            max_subscriptions=MAX_PROXY_SUBSCRIPTIONS,
            churn=parse_churn(
                headers.get("Meta-Churn", ""), limits.SUBSCRIBE_RATE, limits.SUBSCRIBE_BURST
            ),
        )
        self.session.errors = parse_count(headers.get("Meta-Errors", ""))
        told = parse_positions(headers.get("Meta-Pos", ""))
        self.told = {c: p for c, p in told.items() if c in subscriptions}
        self.read_now: set[str] = set()  # positions read during this request

    def receive(self, reply: Reply) -> list[tuple[str, bytes | None]]:
        # Controls first: the subscription is in place before the client reads "subscribed".
        events = [control("subscribe", s.channel) for s in reply.subscribe if not s.joined]
        events += [control("unsubscribe", channel) for channel in reply.unsubscribe]
        if reply.subscribe:
            positions = self.backend.read_positions(s.channel for s in reply.subscribe)
            for channel, since, _ in reply.subscribe:
                self.read_now.add(channel)
                position = self.told[channel] = positions[channel]
                events.append(message(subscribed_frame(channel, position, since)))
        for channel in reply.unsubscribe:
            self.told.pop(channel, None)
        events += [message(frame) for frame in reply.frames]
        if reply.close is not None:
            events.append(("CLOSE", reply.close.to_bytes(2, "big")))
        return events

    def resyncs(self) -> list[tuple[str, bytes | None]]:
        """`resync` for each channel whose position moved past what the page was told."""
        told = {c: self.told.get(c) for c in self.session.subscriptions - self.read_now}
        if not told:
            return []
        events = []
        for channel, position in self.backend.read_positions(told).items():
            if has_news(told[channel], position):
                self.told[channel] = position
                events.append(message(resync_frame(channel, position)))
        return events


@csrf_exempt
def websocket_over_http(request: HttpRequest) -> HttpResponse:
    if not verify_grip_sig(request.headers.get("Grip-Sig")):
        return HttpResponseForbidden("missing or invalid Grip-Sig\n")
    if request.method != "POST" or request.content_type != CONTENT_TYPE:
        return HttpResponseBadRequest(f"expected a POST of {CONTENT_TYPE}\n")
    try:
        events = parse_events(request.body)
    except (ValueError, UnicodeDecodeError):
        return HttpResponseBadRequest("malformed websocket-events body\n")

    connection = Connection(request)
    session = connection.session
    out: list[tuple[str, bytes | None]] = []
    for kind, content in events:
        if out and out[-1][0] == "CLOSE":
            break  # the connection is closing: later events get no answer
        if kind == "OPEN":
            if not origin_allowed(request.headers.get("Origin")):
                return HttpResponseForbidden("origin not allowed\n")
            out.append(("OPEN", None))
        elif kind == "TEXT":
            text = (content or b"").decode("utf-8", "replace")
            out += connection.receive(session.receive_text(text))
        elif kind == "BINARY":
            out += connection.receive(session.receive_bytes(content or b""))
        elif kind == "PING":
            out.append(("PONG", content))
        elif kind == "CLOSE":
            out.append(("CLOSE", content))
    if not (out and out[-1][0] == "CLOSE"):
        out += connection.resyncs()
    response = HttpResponse(encode_events(out), content_type=CONTENT_TYPE)
    response["Sec-WebSocket-Extensions"] = "grip"
    response["Set-Meta-Subs"] = ",".join(sorted(session.subscriptions))
    response["Set-Meta-Pos"] = format_positions(connection.told)
    response["Set-Meta-Errors"] = str(session.errors)
    response["Set-Meta-Churn"] = format_churn(session.churn)
    return response


def message(frame: str) -> tuple[str, bytes]:
    return "TEXT", b"m:" + frame.encode()
