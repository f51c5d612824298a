"""Streams behind Pushpin or Fastly Fanout: GRIP HTTP streaming.

The proxy passes the page's POST here (signed with Grip-Sig). The view runs the request's
client frames through the same protocol Session as a socket (private channels' tokens are
checked before the channel is handed to the proxy), answers the `subscribed` frames with
the channels' positions, and tells the proxy to hold the response open (`Grip-Hold: stream`)
on one `Grip-Channel` per subscribed channel, sending keep-alive comments itself
(`Grip-Keep-Alive`). Hints then reach the held stream as the `http-stream` format the GRIP
backend publishes beside `ws-message`. A hint published while the proxy takes the channels
over can be lost: the answer asks the page to check positions soon (STREAM_RECHECK_HEADER).
"""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt

from pushgateway.backends import get_backend
from pushgateway.constants import (
    MAX_PROXY_SUBSCRIPTIONS,
    STREAM_KEEPALIVE_SECONDS,
    STREAM_RECHECK_HEADER,
)
from pushgateway.protocol import Session, sse_close, sse_event, stream_frames, subscribed_frame
from pushgateway.ratelimit import TokenBucket
from pushgateway.tokens import check_token

from .gripsig import verify_grip_sig
from .origins import origin_allowed

#: What the proxy holds a stream on when none of its subscriptions was granted (a hold needs
#: a channel): no channel name can be this, so nothing is ever published on it.
NO_CHANNEL = "!none"


def text_response(status: int, text: str) -> HttpResponse:
    return HttpResponse(f"{text}\n", status=status, content_type="text/plain; charset=utf-8")


def answer(frames: list[str]) -> tuple[list[str], list[str], bool]:
    """The SSE events that answer `frames`, the channels to hold the stream on, and whether
    the stream ends at once (the Session closed it)."""
    backend = get_backend()
    limits = backend.limits
    churn = TokenBucket(limits.SUBSCRIBE_RATE, limits.SUBSCRIBE_BURST, time.time)
    session = Session(check_token, max_subscriptions=MAX_PROXY_SUBSCRIPTIONS, churn=churn)
    events: list[str] = []
    for text in frames:
        reply = session.receive_text(text)
        if reply.subscribe:
            positions = backend.read_positions(s.channel for s in reply.subscribe)
            for channel, since, _ in reply.subscribe:
                events.append(sse_event(subscribed_frame(channel, positions[channel], since)))
        events += [sse_event(frame) for frame in reply.frames]
        if reply.close is not None:
            return [*events, sse_close(reply.close)], [], True
    return events, sorted(session.subscriptions), False


@csrf_exempt
def grip_stream(request: HttpRequest) -> HttpResponse:
    """Open a stream held by the GRIP proxy (see the module's docstring)."""
    if not verify_grip_sig(request.headers.get("Grip-Sig")):
        return HttpResponseForbidden(
            "streams are served by channels_app.asgi, or through a GRIP proxy "
            "(missing or invalid Grip-Sig)\n"
        )
    if request.method != "POST":
        response = text_response(405, "open a stream with a POST")
        response["Allow"] = "POST"
        return response
    if not origin_allowed(request.headers.get("Origin")):
        return text_response(403, "origin not allowed")
    frames = stream_frames(request.body)
    if isinstance(frames, str):
        return text_response(400, f"expected {frames}")
    events, channels, ended = answer(frames)
    response = HttpResponse("".join(events), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    if ended:
        return response
    response["Grip-Hold"] = "stream"
    response["Grip-Channel"] = ", ".join(channels or [NO_CHANNEL])
    response["Grip-Keep-Alive"] = f":\\n\\n; format=cstring; timeout={STREAM_KEEPALIVE_SECONDS}"
    response[STREAM_RECHECK_HEADER] = "1"
    return response
