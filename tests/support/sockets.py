"""Sockets to the ASGI application in the test process (Channels' communicator), no server."""

import json

from channels.testing import WebsocketCommunicator

from channels_app.asgi import application
from pushgateway.constants import WEBSOCKET_PATH

ORIGIN = [(b"origin", b"http://127.0.0.1")]


async def connect(headers=ORIGIN):
    socket = WebsocketCommunicator(application, WEBSOCKET_PATH, headers=headers)
    connected, _ = await socket.connect()
    assert connected
    return socket


async def send(socket, frame):
    await socket.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))
    return json.loads(await socket.receive_from(timeout=2))


async def subscribe(socket, channel, **fields):
    """Subscribe and return the `subscribed` frame (its position and stale flag)."""
    frame = await send(socket, {"type": "subscribe", "channel": channel, **fields})
    assert frame["type"] == "subscribed" and frame["channel"] == channel, frame
    return frame


async def receive(socket):
    return json.loads(await socket.receive_from(timeout=2))
