"""The practical limit of Python for the fan-out benchmarks: a bare `websockets` server on
redis-py, with no Django, no Channels and no ASGI.

It speaks just enough of the wire protocol for the benchmark clients (a `subscribe` is
answered `subscribed`; everything else is ignored) and subscribes to each channel's Redis
pub/sub channel once, with redis-py, where the project's publisher (pushgateway.publish on
the channels_redis pub/sub layer, settings.dev) writes each hint. Every message's frame
goes to that channel's sockets with ``websockets.broadcast``, the library's own fan-out
(it frames the message again for every socket). So the publisher, Redis and the frames are
the project's, and only the server differs.

    python -m bench.bare_websockets PORT [BACKLOG]      # REDIS_URL names the Redis
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import redis.asyncio as redis
from websockets.asyncio.server import broadcast, serve

from pushgateway.adapters import (
    CHANNELS_REDIS_PREFIX,
    decode_pubsub_payload,
    pubsub_group_channel,
)
from pushgateway.layer import group_name
from pushgateway.protocol import subscribed_frame


class Fanout:
    def __init__(self, url: str) -> None:
        self.pubsub = redis.from_url(url).pubsub()
        self.sockets: dict[str, set] = {}  # Redis channel -> sockets
        self.channels: dict[str, str] = {}  # Redis channel -> pushgateway channel

    async def subscribe(self, channel: str, socket) -> None:
        key = pubsub_group_channel(CHANNELS_REDIS_PREFIX, group_name(channel))
        if key not in self.sockets:
            self.sockets[key] = set()
            self.channels[key] = channel
            await self.pubsub.subscribe(key)
        self.sockets[key].add(socket)

    def drop(self, socket) -> None:
        for sockets in self.sockets.values():
            sockets.discard(socket)

    async def forward(self) -> None:
        while True:
            if not self.pubsub.subscribed:
                await asyncio.sleep(0.05)
                continue
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is None:
                continue
            event = decode_pubsub_payload(message["data"])
            sockets = self.sockets.get(message["channel"].decode())
            if sockets and "frame" in event:
                broadcast(sockets, event["frame"])


async def main(port: int, backlog: int = 100) -> None:
    fanout = Fanout(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))

    async def handler(socket) -> None:
        try:
            async for text in socket:
                frame = json.loads(text)
                if frame.get("type") == "subscribe":
                    await fanout.subscribe(frame["channel"], socket)
                    await socket.send(subscribed_frame(frame["channel"], None, None))
        finally:
            fanout.drop(socket)

    options = {"compression": None, "ping_interval": None, "backlog": backlog}
    async with serve(handler, "127.0.0.1", port, **options):
        await fanout.forward()


if __name__ == "__main__":
    asyncio.run(main(*map(int, sys.argv[1:3])))
