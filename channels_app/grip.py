"""The WebSocket-over-HTTP endpoint used behind Pushpin or Fastly Fanout.

The proxy holds the browser's WebSocket and POSTs its events to this view; the view runs
them through the same protocol Session as the Channels consumer. Each request may reach a
different process, so the connection's state (its subscriptions, the positions it was last
told, its error count, its subscribe budget) travels with the proxy as one value the view
signs (gripstate.py): a client can send `Meta-*` headers too, and only state this server
signed for the connection is believed. Hints go from the publisher through the proxy, never
through this view, so on every request the view also checks the connection's channels and
sends `resync` where one moved on, and checks the token of each private subscription again:
one that expired, or was signed with a key since dropped from SECRET_KEY_FALLBACKS, ends its
subscription (`forbidden` to the page, a GRIP `unsubscribe` to the proxy). A connection with
private subscriptions asks the proxy for a request at least every PROXY_KEEP_ALIVE_SECONDS
(`Keep-Alive-Interval`), so the check runs also for a client that never sends anything.
"""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt

from pushgateway.backends import get_backend
from pushgateway.constants import (
    MAX_PROXY_BODY_BYTES,
    MAX_PROXY_EVENTS,
    MAX_PROXY_SUBSCRIPTIONS,
    PROXY_KEEP_ALIVE_SECONDS,
    CloseCode,
)
from pushgateway.protocol import (
    Reply,
    Session,
    has_news,
    is_private,
    resync_frame,
    subscribed_frame,
)
from pushgateway.ratelimit import TokenBucket
from pushgateway.tokens import check_token

from .gripsig import verify_grip_sig
from .gripstate import STATE_HEADER, InvalidState, ProxyState, dump_state, load_state
from .origins import origin_allowed
from .websocket_events import CONTENT_TYPE, Event, control, encode_events, message, parse_events


def closing(events: list[Event]) -> bool:
    """Whether the answer so far closes the connection."""
    return bool(events) and events[-1][0] == "CLOSE"


#: One of the unsigned headers earlier code kept a connection's state in.
LEGACY_HEADER = "Meta-Subs"


class Connection:
    """One proxied WebSocket for the length of one request: its Session and positions."""

    def __init__(self, state: ProxyState) -> None:
        self.backend = get_backend()
        limits = self.backend.limits
        tokens, stamp = state.churn or (None, None)
        self.session = Session(
            authorize=check_token,
            subscriptions=set(state.subscriptions),
            max_subscriptions=MAX_PROXY_SUBSCRIPTIONS,
            churn=TokenBucket(
                limits.SUBSCRIBE_RATE, limits.SUBSCRIBE_BURST, time.time, tokens, stamp
            ),
        )
        self.session.errors = state.errors
        # A private subscription without a token (a state signed before tokens travelled in
        # it) is checked against none: it ends, and the page subscribes again with its token.
        self.session.tokens = {
            c: state.tokens.get(c, "") for c in state.subscriptions if is_private(c)
        }
        self.told = {c: p for c, p in state.subscriptions.items() if p is not None}
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
            # After the events: a subscribe in them may have renewed a token that was due.
            out += self.receive(self.session.expire())
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

    def state(self) -> ProxyState:
        """What the proxy must keep for the connection's next request."""
        churn = self.session.churn
        return ProxyState(
            {c: self.told.get(c) for c in self.session.subscriptions},
            self.session.errors,
            (churn.tokens, churn.stamp) if churn is not None else None,
            dict(self.session.tokens),
        )

    def keep_alive(self) -> int:
        """The `Keep-Alive-Interval` to ask of the proxy: with private subscriptions, a
        request (empty when the client sent nothing) at least every PROXY_KEEP_ALIVE_SECONDS,
        which checks their tokens; without, none (0 turns it off)."""
        return PROXY_KEEP_ALIVE_SECONDS if self.session.tokens else 0


def closed(code: int, reason: bytes) -> HttpResponse:
    """An answer that closes the connection, its state untouched."""
    return events_response([("CLOSE", code.to_bytes(2, "big") + reason)])


def events_response(events: list[Event]) -> HttpResponse:
    response = HttpResponse(encode_events(events), content_type=CONTENT_TYPE)
    response["Sec-WebSocket-Extensions"] = "grip"
    return response


@csrf_exempt
def websocket_over_http(request: HttpRequest) -> HttpResponse:
    if not verify_grip_sig(request.headers.get("Grip-Sig")):
        return HttpResponseForbidden("missing or invalid Grip-Sig\n")
    # Compared exactly, as Pushpin's guard against clients posting this type themselves
    # does (Django's content_type is lowercased and drops parameters): any other spelling
    # is a client's plain HTTP request that the proxy passed on, not a WebSocket's events.
    if request.method != "POST" or request.META.get("CONTENT_TYPE") != CONTENT_TYPE:
        return HttpResponseBadRequest(f"expected a POST of {CONTENT_TYPE}\n")
    if len(request.body) > MAX_PROXY_BODY_BYTES:
        return closed(CloseCode.MESSAGE_TOO_BIG, b"request too large")
    try:
        events = parse_events(request.body)
    except (ValueError, UnicodeDecodeError):
        return HttpResponseBadRequest("malformed websocket-events body\n")
    if len(events) > MAX_PROXY_EVENTS:
        return closed(CloseCode.MESSAGE_TOO_BIG, b"too many events")
    connection_id = request.headers.get("Connection-Id", "")
    if STATE_HEADER not in request.headers and LEGACY_HEADER in request.headers:
        # A connection opened before this version kept its state unsigned: it reconnects
        # and subscribes again, with its positions and tokens.
        return closed(CloseCode.SERVICE_RESTART, b"connection state from an older version")
    try:
        state = load_state(request.headers.get(STATE_HEADER), connection_id)
    except InvalidState:
        return closed(CloseCode.POLICY_VIOLATION, b"invalid connection state")
    connection = Connection(state)
    answer = connection.answer(events, request.headers.get("Origin"))
    if answer is None:
        return HttpResponseForbidden("origin not allowed\n")
    response = events_response(answer)
    response[f"Set-{STATE_HEADER}"] = dump_state(connection.state(), connection_id)
    response["Keep-Alive-Interval"] = str(connection.keep_alive())
    return response
