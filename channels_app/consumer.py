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
import math
import time
from collections import deque

from asgiref.sync import markcoroutinefunction

from pushgateway.adapters import frame_writer, start_send_coroutine, transport_closed
from pushgateway.backends import get_backend
from pushgateway.constants import MAX_PENDING_BYTES, CloseCode, ErrorCode
from pushgateway.protocol import Reply, Session, subscribed_frame
from pushgateway.ratelimit import TokenBucket
from pushgateway.tokens import check_token

from . import tuning
from .admission import client_address, get_admission
from .drain import get_drain
from .frames import PreparedBatch, PreparedSend
from .hub import ChannelCapReached, get_hub
from .origins import origin_allowed, scope_origin

logger = logging.getLogger("pushgateway.consumer")

#: The longest a socket past a budget goes unread (Reply.hold): well under the browser
#: module's pong timeout (10 s), however low a rate the settings give.
MAX_HOLD_SECONDS = 1.0


def message_size(message: dict) -> int:
    """The size of an ASGI message a connection sends: its text or its body."""
    return len(message.get("text") or message.get("body") or "")


class PushGatewayConsumer:
    """One WebSocket connection speaking the pushgateway wire protocol."""

    __slots__ = (
        "send",
        "session",
        "hub",
        "admission",
        "address",
        "writer",
        "closing",
        "backlog",
        "backlog_bytes",
    )

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

    def begin(self, scope, send) -> None:
        """The state of a new connection, before the client said anything."""
        self.send = send
        self.session = None
        self.closing = False
        self.backlog = None  # frames waiting behind a send the server made wait
        self.writer = None  # writes prepared frames to the transport (channels_app.frames)
        self.address = client_address(scope)  # per-address limits (channels_app.admission)

    async def __call__(self, scope, receive, send) -> None:
        self.begin(scope, send)
        origin = scope_origin(scope)
        scope = None  # nothing else is needed from it; an idle socket should not keep it
        try:
            while True:
                event = await receive()
                kind = event["type"]
                if kind == "websocket.receive":
                    if self.closing:  # gone, or closed by us: what it sent needs no answer
                        continue
                    hold = await self.carry_out(self.received(event))
                    if hold and not self.closing:
                        await self.hold(hold)
                elif kind == "websocket.connect":
                    if not await self.accept(origin):
                        return
                elif kind == "websocket.disconnect":
                    return
        finally:
            if self.session is not None:
                self.closed()

    async def hold(self, seconds: float) -> None:
        """Read nothing for `seconds` (Reply.hold, at most MAX_HOLD_SECONDS): the client went
        past a budget, so what it sends meanwhile waits (its answers too) and a flood of
        refused subscribes costs the process little. A client gone meanwhile is answered
        no more (its frames may still be queued for this consumer)."""
        await asyncio.sleep(min(seconds, MAX_HOLD_SECONDS))
        if self.writer is not None and transport_closed(self.writer.transport):
            self.closing = True

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
        self.admission = get_admission()
        if not self.admission.connect(self.address):
            # Accepted to be closed with a code the page understands (a refused handshake
            # looks to it like a network error): it waits its longest backoff and polls.
            await self.send({"type": "websocket.accept"})
            await self.send(
                {"type": "websocket.close", "code": int(CloseCode.TOO_MANY_CONNECTIONS)}
            )
            return False
        limits = get_backend().limits
        churn = TokenBucket(limits.SUBSCRIBE_RATE, limits.SUBSCRIBE_BURST, time.monotonic)
        self.session = Session(authorize=check_token, churn=churn)
        await self.send({"type": "websocket.accept"})
        self.writer = frame_writer(self.send)  # None: the server is not known, ASGI send
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
        self.admission.disconnect(self.address)
        get_drain().closed(self)
        self.count(-1)
        if self.hub.metrics:
            self.hub.metrics.subscriptions.dec(len(channels))

    async def carry_out(self, reply: Reply) -> float:
        """Do what `reply` says; returns the seconds to read nothing more (Reply.hold)."""
        hold = reply.hold
        for subscribe in reply.subscribe:
            channel = subscribe.channel
            if not subscribe.joined:
                joined, wait = await self.join(channel)
                hold = max(hold, wait)
                if not joined:
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
        return hold

    async def join(self, channel: str) -> tuple[bool, float]:
        """Put this socket on `channel` in the hub: whether it is, and the seconds to hold
        (Reply.hold) after a refusal that said when to come back. A channel the process
        serves already costs nothing; a new one must fit under MAX_CHANNELS and the
        address's join budget, and waits its turn among the joins of other addresses."""
        refusal, wait = None, 0.0
        if not self.hub.serves(channel):
            refusal, wait = self.refusal(channel)
        if refusal is None:
            try:
                # Joins are served in turn per address (per socket, where there is none).
                await self.hub.subscribe(channel, self, self.address or self)
                return True, 0.0
            except ChannelCapReached:
                refusal = self.cap_reached(channel)
            except Exception as exc:
                logger.warning("pushgateway: joining %r failed: %r", channel, exc)
                refusal = self.session.subscribe_failed(channel)
        await self.send_frame(refusal)
        return False, wait

    def refusal(self, channel: str) -> tuple[str | None, float]:
        """The answer to a subscribe that would make the process join `channel` and may
        not (None if it may), and the seconds until it may."""
        if self.hub.full():
            return self.cap_reached(channel), 0.0
        wait = self.admission.join(self.address)
        if wait is None:
            return None, 0.0
        wait = math.ceil(wait * 10) / 10
        joins = self.admission.joins
        frame = self.session.subscribe_refused(
            channel,
            ErrorCode.RATE_LIMITED,
            f"your address joined more than {joins.burst:g} new channels at once or "
            f"{joins.rate:g} per second; try again in {wait:g} s",
            retry_after=wait,
        )
        return frame, wait

    def cap_reached(self, channel: str) -> str:
        if self.hub.metrics:
            self.hub.metrics.subscribes_refused.labels("channel_cap").inc()
        return self.session.subscribe_refused(
            channel,
            ErrorCode.UNAVAILABLE,
            "the server has joined as many channels as it may (MAX_CHANNELS); try again later",
        )

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

        A hint's frame, built once by the hub (channels_app.frames), goes straight to the
        socket's transport where pushgateway.adapters knows the server (daphne, uvicorn) and
        nothing waits in the queue below: one write, no framing per socket. Otherwise the
        message goes through the server's ASGI `send`. daphne's `send` never waits, so this
        normally writes at once. Other servers (uvicorn, hypercorn, granian) make `send` wait
        while the client is not reading; then the send goes on in a task and later frames
        queue behind it (no frame may overtake them), so one stalled client never holds up
        the others. A client that lets more than MAX_PENDING_BYTES pile up, in the transport
        (where it is known) or in that queue (any server), is closed (4013).
        """
        if self.closing:
            return
        if self.backlog is not None:
            self.backlog_bytes += message_size(message)
            if self.backlog_bytes > MAX_PENDING_BYTES:
                return self.too_slow()
            self.backlog.append(message)
            return
        if self.written(message):
            return
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

    def push_many(self, batch: PreparedBatch) -> None:
        """Send the messages of `batch` without waiting, in order: in one write where push
        would write a frame straight to the transport, else one push each."""
        if self.closing:
            return
        if self.backlog is None and self.written(batch):
            return
        for message in batch:
            self.push(message)

    def written(self, message: PreparedSend | PreparedBatch | dict) -> bool:
        """Whether `message` is taken care of by the socket's FrameWriter: its bytes written
        to the transport, or the socket closed for not reading them."""
        writer = self.writer
        if writer is None:
            return False
        if writer.pending() > MAX_PENDING_BYTES:
            self.too_slow()
            return True
        wire = getattr(message, "wire", None) if tuning.frames else None
        return wire is not None and writer.write(wire)

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
