"""The WebSocket consumer: ASGI events in, protocol Session in the middle, hub out.

A plain ASGI application rather than a Channels generic consumer: it needs no per-socket
channel-layer channel (the hub subscribes for the process), no dispatch task per socket and
no thread hop per frame (Channels' dispatch runs `aclose_old_connections` in a thread before
every handler), and every idle socket costs server memory, so it keeps only what it uses.
"""

from __future__ import annotations

import logging
from urllib.parse import urlparse

from channels.security.websocket import AllowedHostsOriginValidator

from pushgateway.protocol import CLOSE_TOO_SLOW, Reply, Session, subscribed_frame
from pushgateway.tokens import check_token

from .hub import get_hub

logger = logging.getLogger("pushgateway.consumer")

# A socket whose unsent output passes this is not keeping up (a stalled or very slow client):
# it is closed rather than left to grow the server's memory. About 1,500 hints.
MAX_PENDING_BYTES = 256 * 1024


def origin_allowed(origin: str | None) -> bool:
    """Whether an Origin header value matches ALLOWED_HOSTS, as Channels'
    AllowedHostsOriginValidator decides (it refuses a missing Origin)."""
    try:
        parsed = urlparse(origin) if origin is not None else None
    except ValueError:
        return False
    return AllowedHostsOriginValidator(None).valid_origin(parsed)


def scope_origin(scope) -> str | None:
    origin = next((value for name, value in scope["headers"] if name == b"origin"), None)
    return origin.decode("latin1") if origin is not None else None


def daphne_transport(send):
    """The Twisted transport behind daphne's `send`, or None under another server."""
    # daphne hands every application functools.partial(server.handle_reply, protocol).
    args = getattr(send, "args", None)
    transport = getattr(args[0], "transport", None) if args else None
    has_buffer = all(hasattr(transport, a) for a in ("dataBuffer", "offset", "_tempDataLen"))
    return transport if has_buffer else None


def pending_bytes(transport) -> int:
    """Bytes a Twisted TCP transport holds that the kernel has not taken yet."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


class PushGatewayConsumer:
    """One WebSocket connection speaking the pushgateway wire protocol."""

    __slots__ = ("send", "session", "hub", "transport", "closing")

    @classmethod
    def as_asgi(cls):
        """The ASGI application for URLRouter or a dispatcher of your own."""

        # A plain function returning the coroutine: one coroutine frame per socket, not two.
        def app(scope, receive, send):
            return cls()(scope, receive, send)

        app._asgi_single_callable = True
        app.consumer_class = cls
        return app

    async def __call__(self, scope, receive, send) -> None:
        self.send = send
        self.session = None
        self.closing = False
        origin = scope_origin(scope)
        scope = None  # nothing else is needed from it; an idle socket should not keep it
        try:
            while True:
                event = await receive()
                kind = event["type"]
                if kind == "websocket.receive":
                    text = event.get("text")
                    if text is not None:
                        await self.carry_out(self.session.receive_text(text))
                    else:
                        await self.carry_out(self.session.receive_bytes(event.get("bytes")))
                elif kind == "websocket.connect":
                    # Checked here, not by a wrapping application, so that no extra
                    # coroutine stays alive for the life of every socket.
                    self.hub = get_hub()
                    if self.hub is None:
                        # The backend publishes elsewhere (Fanout): a socket here would
                        # look connected and never receive. Refuse it; pages poll.
                        logger.warning(
                            "pushgateway: refused a WebSocket: the backend does not publish "
                            "to this server (pages connect through the Fanout proxy)"
                        )
                    if self.hub is None or not origin_allowed(origin):
                        await send({"type": "websocket.close"})  # daphne answers 403
                        return
                    self.session = Session(authorize=check_token)
                    self.transport = daphne_transport(send)
                    await send({"type": "websocket.accept"})
                elif kind == "websocket.disconnect":
                    return
        finally:
            if self.session is not None:
                self.hub.drop(self, self.session.close_all())

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
            position = await self.hub.position(channel)
            await self.send_frame(subscribed_frame(channel, position, subscribe.since))
        self.hub.drop(self, reply.unsubscribe)
        for frame in reply.frames:
            await self.send_frame(frame)
        if reply.close is not None:
            await self.close(reply.close)

    async def close(self, code: int) -> None:
        if not self.closing:
            self.closing = True
            await self.send({"type": "websocket.close", "code": code})

    async def send_frame(self, text: str) -> None:
        """Send one frame: a reply, or a message the hub relays. A client that does not read
        what it is sent is closed rather than buffered for."""
        if self.closing:
            return
        if self.transport is not None and pending_bytes(self.transport) > MAX_PENDING_BYTES:
            logger.warning(
                "pushgateway: closing a socket that stopped reading (%d)", CLOSE_TOO_SLOW
            )
            await self.close(CLOSE_TOO_SLOW)
            return
        try:
            await self.send({"type": "websocket.send", "text": text})
        except (OSError, RuntimeError):
            # The page closed the connection while this frame was on its way (daphne raises
            # autobahn's Disconnected, a RuntimeError; ASGI servers may raise an OSError):
            # its disconnect event comes next. Normal, not an error.
            self.closing = True
