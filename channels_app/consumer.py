"""The WebSocket consumer: ASGI events in, protocol Session in the middle, hub out."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from pushgateway.protocol import Reply, Session
from pushgateway.tokens import check_token

from .hub import get_hub


class PushGatewayConsumer(AsyncWebsocketConsumer):
    # The hub joins channel-layer groups for the whole process; a per-socket layer
    # channel would only cost memory (and a Redis subscription with the pub/sub layer).
    channel_layer_alias = None

    async def connect(self) -> None:
        self.session = Session(authorize=check_token)
        self.hub = get_hub()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            for channel in session.close_all():
                await self.hub.unsubscribe(channel, self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        if text_data is not None:
            reply = self.session.receive_text(text_data)
        else:
            reply = self.session.receive_bytes(bytes_data or b"")
        await self.carry_out(reply)

    async def carry_out(self, reply: Reply) -> None:
        frames = list(reply.frames)
        for channel in reply.subscribe:
            try:
                await self.hub.subscribe(channel, self)
            except Exception:
                frames = [self.session.subscribe_failed(channel)]
        for channel in reply.unsubscribe:
            await self.hub.unsubscribe(channel, self)
        for frame in frames:
            await self.send(text_data=frame)
        if reply.close is not None:
            await self.close(code=reply.close)

    async def send_frame(self, text: str) -> None:
        """Called by the hub for each message on a subscribed channel."""
        await self.base_send({"type": "websocket.send", "text": text})
