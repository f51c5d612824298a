"""The WebSocket-over-HTTP endpoint used behind Pushpin or Fastly Fanout.

The proxy holds the browser's WebSocket and POSTs its events to this view; the view runs
them through the same protocol Session as the Channels consumer. Each request may reach a
different process, so the connection's state travels in `Meta-*` headers the proxy keeps:
its subscriptions, the positions it was last told, its error count, its subscribe budget.
Hints go from the publisher through the proxy, never through this view, so on every request
the view also checks the connection's channels and sends `resync` where one moved on.
"""

from __future__ import annotations

import re
import time

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt

from pushgateway.backends import get_backend
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

from .gripsig import verify_grip_sig
from .origins import origin_allowed
from .websocket_events import CONTENT_TYPE, Event, control, encode_events, message, parse_events

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


def closing(events: list[Event]) -> bool:
    """Whether the answer so far closes the connection."""
    return bool(events) and events[-1][0] == "CLOSE"


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

    def answer(self, events: list[Event], origin: str | None) -> list[Event] | None:
        """The events that answer the proxy's `events`; None if the connection opens from
        an Origin that ALLOWED_HOSTS does not allow."""
        out: list[Event] = []
        for kind, content in events:
            if closing(out):
                break  # the connection is closing: later events get no answer
            if kind == "OPEN":
                if not origin_allowed(origin):
                    return None
                out.append(("OPEN", None))
            elif kind == "TEXT":
                text = (content or b"").decode("utf-8", "replace")
                out += self.receive(self.session.receive_text(text))
            elif kind == "BINARY":
                out += self.receive(self.session.receive_bytes(content or b""))
            elif kind == "PING":
                out.append(("PONG", content))
            elif kind == "CLOSE":
                out.append(("CLOSE", content))
        if not closing(out):
            out += self.resyncs()
        return out

    def receive(self, reply: Reply) -> list[Event]:
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

    def resyncs(self) -> list[Event]:
        """`resync` for each channel whose position moved past what the page was told.

        A page that received the hints already has that position and ignores it; one that
        missed them (published while the proxy was applying the subscription, or dropped on
        the way) refetches. The browser module pings soon after subscribing and every 25 s,
        so every connection is checked that often."""
        told = {c: self.told.get(c) for c in self.session.subscriptions - self.read_now}
        if not told:
            return []
        events = []
        for channel, position in self.backend.read_positions(told).items():
            if has_news(told[channel], position):
                self.told[channel] = position
                events.append(message(resync_frame(channel, position)))
        return events

    def meta_headers(self) -> dict[str, str]:
        """The Set-Meta-* headers that make the proxy keep this connection's state."""
        return {
            "Set-Meta-Subs": ",".join(sorted(self.session.subscriptions)),
            "Set-Meta-Pos": format_positions(self.told),
            "Set-Meta-Errors": str(self.session.errors),
            "Set-Meta-Churn": format_churn(self.session.churn),
        }


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
    answer = connection.answer(events, request.headers.get("Origin"))
    if answer is None:
        return HttpResponseForbidden("origin not allowed\n")
    response = HttpResponse(encode_events(answer), content_type=CONTENT_TYPE)
    response["Sec-WebSocket-Extensions"] = "grip"
    for name, value in connection.meta_headers().items():
        response[name] = value
    return response
