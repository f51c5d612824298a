"""The WebSocket consumer: ASGI events in, protocol Session in the middle, hub out.

A plain ASGI application rather than a Channels generic consumer: it needs no per-socket
channel-layer channel (the hub subscribes for the process), no dispatch task per socket and
no thread hop per frame (Channels' dispatch runs `aclose_old_connections` in a thread before
every handler), and every idle socket costs server memory, so it keeps only what it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from asgiref.sync import markcoroutinefunction

from pushgateway.adapters import daphne_transport, pending_bytes, start_send_coroutine
from pushgateway.backends import get_backend
from pushgateway.constants import MAX_PENDING_BYTES, CloseCode
from pushgateway.protocol import Reply, Session, subscribed_frame
from pushgateway.ratelimit import TokenBucket
from pushgateway.tokens import check_token

from .drain import get_drain
from .hub import get_hub
from .origins import origin_allowed, scope_origin

logger = logging.getLogger("pushgateway.consumer")


def message_size(message: dict) -> int:
    """The size of an ASGI message a connection sends: its text or its body."""
    return len(message.get("text") or message.get("body") or "")


class PushGatewayConsumer:
    """One WebSocket connection speaking the pushgateway wire protocol."""

    __slots__ = ("send", "session", "hub", "transport", "closing", "backlog", "backlog_bytes")

    @classmethod
    def as_asgi(cls):
        """The ASGI application for URLRouter or a dispatcher of your own."""

        # A plain function returning the coroutine: one coroutine frame per socket, not two.
        # Marked as a coroutine function so that servers (and asgiref's guarantee_single_
        # callable, which daphne uses) take it for an ASGI 3 application as it is.
        @markcoroutinefunction
        def app(scope, receive, send):
            return cls()(scope, receive, send)

        app.consumer_class = cls
        return app

    async def __call__(self, scope, receive, send) -> None:
        self.send = send
        self.session = None
        self.closing = False
        self.backlog = None  # frames waiting behind a send the server made wait
        origin = scope_origin(scope)
        scope = None  # nothing else is needed from it; an idle socket should not keep it
        try:
            while True:
                event = await receive()
                kind = event["type"]
                if kind == "websocket.receive":
                    await self.carry_out(self.received(event))
                elif kind == "websocket.connect":
                    if not await self.accept(origin):
                        return
                elif kind == "websocket.disconnect":
                    return
        finally:
            if self.session is not None:
                self.closed()

    async def accept(self, origin: str | None) -> bool:
        """Accept the socket, or refuse it (False): the Origin is not allowed, this server
        receives no hints, or it is draining for a restart (the page reconnects elsewhere).
        Checked here, not by a wrapping application, so that no extra coroutine stays alive
        for the life of every socket."""
        self.hub = get_hub()
        drain = get_drain()
        if self.hub is None:
            # The backend publishes elsewhere (Fanout): a socket here would look connected
            # and never receive. Refuse it; pages poll.
            logger.warning(
                "pushgateway: refused a WebSocket: the backend does not publish "
                "to this server (pages connect through the Fanout proxy)"
            )
        if self.hub is None or drain.draining or not origin_allowed(origin):
            await self.send({"type": "websocket.close"})  # daphne answers 403
            return False
        limits = get_backend().limits
        churn = TokenBucket(limits.SUBSCRIBE_RATE, limits.SUBSCRIBE_BURST, time.monotonic)
        self.session = Session(authorize=check_token, churn=churn)
        self.transport = daphne_transport(self.send)
        await self.send({"type": "websocket.accept"})
        drain.opened(self)
        self.count(1)
        return True

    def count(self, delta: int) -> None:
        """Count this connection in (1) or out (-1) of the metrics' open connections."""
        if self.hub.metrics:
            self.hub.metrics.sockets.inc(delta)

    def received(self, event: dict) -> Reply:
        """The protocol's reply to a `websocket.receive` event."""
        text = event.get("text")
        if text is not None:
            return self.session.receive_text(text)
        return self.session.receive_bytes(event.get("bytes"))

    def recheck_tokens(self) -> None:
        """End the private subscriptions whose tokens no longer verify (the hub asks every
        VERIFY_SECONDS): each gets `forbidden`, and no hint after it."""
        if self.session is None or not self.session.tokens or self.closing:
            return
        reply = self.session.expire()
        self.hub.drop(self, reply.unsubscribe)
        if self.hub.metrics and reply.unsubscribe:
            self.hub.metrics.subscriptions.dec(len(reply.unsubscribe))
        for frame in reply.frames:
            self.push({"type": "websocket.send", "text": frame})

    def closed(self) -> None:
        """Leave the socket's channels once it has closed."""
        channels = self.session.close_all()
        self.hub.drop(self, channels)
        get_drain().closed(self)
        self.count(-1)
        if self.hub.metrics:
            self.hub.metrics.subscriptions.dec(len(channels))

    async def carry_out(self, reply: Reply) -> None:
        for subscribe in reply.subscribe:
            channel = subscribe.channel
            if not subscribe.joined:
                try:
                    await self.hub.subscribe(channel, self)
                except Exception as exc:
                    logger.warning("pushgateway: joining %r failed: %r", channel, exc)
                    await self.send_frame(self.session.subscribe_failed(channel))
                    continue
                if self.hub.metrics:
                    self.hub.metrics.subscriptions.inc()
            position = self.hub.latest(channel, await self.hub.position(channel))
            await self.send_frame(subscribed_frame(channel, position, subscribe.since))
        self.hub.drop(self, reply.unsubscribe)
        if self.hub.metrics and reply.unsubscribe:
            self.hub.metrics.subscriptions.dec(len(reply.unsubscribe))
        for frame in reply.frames:
            await self.send_frame(frame)
        if reply.close is not None:
            await self.close(reply.close)

    async def close(self, code: int) -> None:
        if not self.closing:
            self.closing = True
            # int(): autobahn (daphne) refuses an int subclass such as CloseCode with 1011.
            with contextlib.suppress(OSError, RuntimeError):  # it closed first: as good
                await self.send({"type": "websocket.close", "code": int(code)})

    def restart(self) -> None:
        """Close for a service restart, without waiting (the process drains: channels_app.drain)."""
        asyncio.ensure_future(self.close(CloseCode.SERVICE_RESTART))

    async def send_frame(self, text: str) -> None:
        """Send one reply frame (in order with the messages the hub pushes)."""
        self.push({"type": "websocket.send", "text": text})

    def push(self, message: dict) -> None:
        """Send `message` without waiting: what the hub calls for every socket on a channel,
        with one message dict for all of them.

        daphne's `send` never waits, so this normally writes at once. Other servers (uvicorn,
        hypercorn, granian) make `send` wait while the client is not reading; then the send
        goes on in a task and later frames queue behind it, so one stalled client never holds
        up the others. A client that lets more than MAX_PENDING_BYTES pile up, in the
        transport (daphne) or in that queue (any server), is closed (4013).
        """
        if self.closing:
            return
        if self.backlog is not None:
            self.backlog_bytes += message_size(message)
            if self.backlog_bytes > MAX_PENDING_BYTES:
                return self.too_slow()
            self.backlog.append(message)
            return
        if self.transport is not None and pending_bytes(self.transport) > MAX_PENDING_BYTES:
            return self.too_slow()
        try:
            waiting = start_send_coroutine(self.send(message))
        except (OSError, RuntimeError):
            # The page closed the connection while this frame was on its way (daphne raises
            # autobahn's Disconnected, a RuntimeError; other servers may raise an OSError):
            # its disconnect event comes next. Normal, not an error.
            self.closing = True
            return
        if waiting is not None:  # the server waits for the client: later frames queue
            self.backlog, self.backlog_bytes = deque(), 0
            asyncio.ensure_future(self.drain(waiting))

    async def drain(self, sending) -> None:
        try:
            await sending
            while self.backlog and not self.closing:
                message = self.backlog.popleft()
                self.backlog_bytes -= message_size(message)
                await self.send(message)
        except Exception:  # the connection is gone; its disconnect event ends the consumer
            logger.debug("pushgateway: a socket closed while frames waited for it")
        finally:
            self.backlog = None

    def too_slow(self) -> None:
        logger.warning(
            "pushgateway: closing a socket that stopped reading (%d)", CloseCode.TRY_AGAIN_LATER
        )
        self.backlog = None
        asyncio.ensure_future(self.close(CloseCode.TRY_AGAIN_LATER))
        if self.hub.metrics:
            self.hub.metrics.slow_clients.inc()
