"""The streaming HTTP transport: Server-Sent Events for pages whose WebSocket is refused.

A page POSTs what it would send on a socket first (`{"frames": [subscribe, ...]}`, tokens in
the body, never in the URL) and reads the answer as a stream of the same server frames a
socket gets, in SSE framing (docs/protocol.md). Each stream is a connection like a socket:
the same protocol Session (validation, tokens, limits, subscribe budget), joined to the
process's hub, the same slow-reader cap (MAX_PENDING_BYTES), drained for a restart with the
same close code (as a last `close` event). A page subscribing to more channels opens a new
stream with its positions: nothing is lost between two streams.

Served by the ASGI application (channels_app.asgi) on daphne or uvicorn. When the backend
publishes elsewhere (Fanout), there is no hub here: the request goes to the Django view of
channels_app.gripstream, which answers a GRIP proxy (Pushpin, Fastly Fanout).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from asgiref.sync import markcoroutinefunction

from pushgateway.adapters import transport_bytes
from pushgateway.backends import get_backend
from pushgateway.constants import MAX_STREAM_BODY_BYTES, STREAM_KEEPALIVE_SECONDS
from pushgateway.protocol import SSE_KEEPALIVE, Session, sse_close, sse_event, stream_frames
from pushgateway.ratelimit import TokenBucket
from pushgateway.tokens import check_token

from .admission import get_admission
from .consumer import PushGatewayConsumer
from .drain import get_drain
from .frames import PreparedBatch
from .hub import get_hub
from .origins import origin_allowed, scope_origin

#: The headers of every stream: no cache, and no proxy buffering (nginx reads
#: X-Accel-Buffering) that would hold hints back.
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE = {"type": "http.response.body", "body": SSE_KEEPALIVE.encode(), "more_body": True}

# The browser module sends a stream's frames at once (a few KiB at most): a body not in
# after this long is refused (408), so a client cannot hold a connection and its coroutine
# by trickling bytes, or none, before admission counts it. (daphne reads the whole body
# before the application runs; uvicorn, hypercorn and granian hand it over as it comes.)
BODY_SECONDS = 10.0

_last: tuple[dict, dict] | None = None  # the hub's last message and its SSE event


def as_event(message: dict | PreparedBatch) -> dict:
    """The ASGI message that carries a socket's `websocket.send` message, or a batch of
    them, on a stream. The hub hands every connection on a channel the same message or
    batch: it is encoded once."""
    global _last
    if _last is not None and _last[0] is message:
        return _last[1]
    if isinstance(message, PreparedBatch):
        body = "".join(sse_event(each["text"]) for each in message)
    elif message["type"] == "websocket.send":
        body = sse_event(message["text"])
    else:
        return message
    event = {"type": "http.response.body", "body": body.encode(), "more_body": True}
    _last = (message, event)
    return event


async def read_body(receive) -> bytes | None:
    """The request's body, cut just past MAX_STREAM_BODY_BYTES (then refused as too large);
    None if the client went away first."""
    chunks, size = [], 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return None
        chunk = event.get("body", b"")
        chunks.append(chunk[: MAX_STREAM_BODY_BYTES + 1 - size])
        size += len(chunk)
        if size > MAX_STREAM_BODY_BYTES or not event.get("more_body"):
            return b"".join(chunks)


class StreamConsumer(PushGatewayConsumer):
    """One stream: a POST answered with Server-Sent Events for as long as the page reads."""

    __slots__ = ("ended",)

    @classmethod
    def as_asgi(cls, fallback=None):
        """The ASGI application of the stream path. `fallback` (the Django application)
        answers when this process has no hub: behind a GRIP proxy, the proxy holds streams."""

        @markcoroutinefunction
        async def app(scope, receive, send):
            if fallback is not None and get_hub() is None:
                return await fallback(scope, receive, send)
            return await cls()(scope, receive, send)

        app.consumer_class = cls
        return app

    async def __call__(self, scope, receive, send) -> None:
        self.begin(scope, send)
        try:
            frames = await self.open(scope, receive)
            if frames is not None:
                for text in frames:
                    await self.carry_out(self.session.receive_text(text))
                await self.stay(receive)
        finally:
            if self.session is not None:
                self.closed()

    async def open(self, scope, receive) -> list[str] | None:
        """Start the stream and return the request's client frames; or answer the request
        with a refusal (a clear 4xx or 503, never a 500) and return None."""
        if scope["method"] != "POST":
            return await self.refuse(405, "open a stream with a POST", [(b"allow", b"POST")])
        try:
            body = await asyncio.wait_for(read_body(receive), BODY_SECONDS)
        except TimeoutError:
            return await self.refuse(
                408, f"the request body took too long (over {BODY_SECONDS:g} s)"
            )
        if body is None:
            return None
        frames = stream_frames(body)
        if isinstance(frames, str):
            return await self.refuse(400, f"expected {frames}")
        self.hub, drain = get_hub(), get_drain()
        if self.hub is None:
            return await self.refuse(503, "this server receives no hints")
        if drain.draining:
            return await self.refuse(503, "restarting; try again", [(b"retry-after", b"1")])
        if not origin_allowed(scope_origin(scope)):
            return await self.refuse(403, "origin not allowed")
        self.admission = get_admission()
        if not self.admission.connect(self.address):  # the page waits its longest backoff
            return await self.refuse(429, "too many connections from your address")
        limits = get_backend().limits
        churn = TokenBucket(limits.SUBSCRIBE_RATE, limits.SUBSCRIBE_BURST, time.monotonic)
        self.session = Session(authorize=check_token, churn=churn)
        self.count(1)  # counted out by closed(), whatever happens next
        self.ended = asyncio.get_running_loop().create_future()
        await self.send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        self.writer = transport_bytes(self.send)  # counts the bytes daphne holds (never writes)
        self.push(KEEPALIVE)  # the headers go out now, whatever the frames
        drain.opened(self)
        return frames

    async def refuse(self, status: int, text: str, headers=()) -> None:
        start = {"type": "http.response.start", "status": status}
        start["headers"] = [(b"content-type", b"text/plain; charset=utf-8"), *headers]
        with contextlib.suppress(OSError, RuntimeError):  # the client went away: as good
            await self.send(start)
            await self.send({"type": "http.response.body", "body": f"{text}\n".encode()})

    async def stay(self, receive) -> None:
        """Keep the stream open until the client goes away or the server ends it, with a
        keep-alive comment after every STREAM_KEEPALIVE_SECONDS of quiet."""
        listening = asyncio.ensure_future(receive())
        try:
            while not self.closing:
                done, _ = await asyncio.wait(
                    {listening, self.ended},
                    timeout=STREAM_KEEPALIVE_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if listening in done:
                    if listening.result()["type"] == "http.disconnect":
                        return
                    listening = asyncio.ensure_future(receive())
                elif not done:
                    self.push(KEEPALIVE)
        finally:
            listening.cancel()

    def count(self, delta: int) -> None:
        if self.hub.metrics:
            self.hub.metrics.streams.inc(delta)

    def push(self, message: dict) -> None:
        super().push(as_event(message))

    def push_many(self, batch: PreparedBatch) -> None:
        super().push(as_event(batch))  # one chunk of events

    async def close(self, code: int) -> None:
        """End the stream with a `close` event that carries `code`, as a socket's close."""
        if not self.closing:
            self.closing = True
            last = {"type": "http.response.body", "body": sse_close(code).encode()}
            with contextlib.suppress(OSError, RuntimeError):
                await self.send(last)
        if not self.ended.done():
            self.ended.set_result(None)
