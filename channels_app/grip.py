"""The WebSocket-over-HTTP endpoint used behind Pushpin or Fastly Fanout.

The proxy holds the browser's WebSocket and POSTs its events to this view as
`application/websocket-events`. The view runs them through the same protocol Session as
the Channels consumer: replies go back `m:`-prefixed, joins and leaves become GRIP
control messages (`c:`), and the connection's subscriptions and error count travel in
`Meta-*` headers, since each request may reach a different process.
"""

from __future__ import annotations

import json

import jwt
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt

from pushgateway.backends import get_config
from pushgateway.backends.fanout import grip_config
from pushgateway.protocol import Reply, Session
from pushgateway.tokens import check_token

from .consumer import origin_allowed

CONTENT_TYPE = "application/websocket-events"
# Pushpin's default connection_subscription_max: past it the proxy ignores a subscribe, so
# the client is told here instead (too_many_subscriptions) of waiting for hints that never come.
MAX_SUBSCRIPTIONS = 20


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
    grip = grip_config(grip_url)
    key = grip.get("verify_key") or grip.get("key")
    if not key:
        return False  # nothing to verify with: refuse rather than trust (system check E008)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256", "ES256", "RS256"],
            options={"require": ["exp"], "verify_iss": bool(grip.get("verify_iss"))},
            issuer=grip.get("verify_iss"),
        )
    except jwt.PyJWTError:
        return False
    return bool(claims)


def control(kind: str, channel: str) -> tuple[str, bytes]:
    return "TEXT", b"c:" + json.dumps({"type": kind, "channel": channel}).encode()


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

    subscriptions = {c for c in request.headers.get("Meta-Subs", "").split(",") if c}
    session = Session(
        authorize=check_token, subscriptions=subscriptions, max_subscriptions=MAX_SUBSCRIPTIONS
    )
    errors = request.headers.get("Meta-Errors", "")
    session.errors = int(errors) if errors.isdigit() else 0
    out: list[tuple[str, bytes | None]] = []
    for kind, content in events:
        if kind == "OPEN":
            if not origin_allowed(request.headers.get("Origin")):
                return HttpResponseForbidden("origin not allowed\n")
            out.append(("OPEN", None))
        elif kind == "TEXT":
            out += reply_events(session.receive_text(content.decode("utf-8", "replace")))
        elif kind == "BINARY":
            out += reply_events(session.receive_bytes(content or b""))
        elif kind == "PING":
            out.append(("PONG", content))
        elif kind == "CLOSE":
            out.append(("CLOSE", content))
    response = HttpResponse(encode_events(out), content_type=CONTENT_TYPE)
    response["Sec-WebSocket-Extensions"] = "grip"
    response["Set-Meta-Subs"] = ",".join(sorted(session.subscriptions))
    response["Set-Meta-Errors"] = str(session.errors)
    return response


def reply_events(reply: Reply) -> list[tuple[str, bytes | None]]:
    # Controls first: the subscription is in place before the client reads "subscribed".
    events = [control("subscribe", channel) for channel in reply.subscribe]
    events += [control("unsubscribe", channel) for channel in reply.unsubscribe]
    events += [("TEXT", b"m:" + frame.encode()) for frame in reply.frames]
    if reply.close is not None:
        events.append(("CLOSE", reply.close.to_bytes(2, "big")))
    return events
