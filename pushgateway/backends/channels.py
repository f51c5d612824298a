"""Publish through a Channels channel layer to the self-hosted WebSocket layer (channels_app).

Each message becomes one `group_send` to the channel's group, carrying the frame already
serialised; every process's hub relays it to its local sockets untouched.
"""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core.checks import Error, Warning

from .. import protocol
from ..sender import BackgroundSender
from .base import BaseBackend

# The channel-layer message type the hub handles.
EVENT_TYPE = "pushgateway.frame"


def layer_event(message) -> dict:
    return {"type": EVENT_TYPE, "channel": message.channel, "frame": message.frame}


class LayerPublisher:
    """Any channel layer: group_send on an event loop owned by the sender thread."""

    def __init__(self, layer) -> None:
        self.layer = layer
        self.loop = None

    async def group_send_all(self, messages) -> None:
        for message in messages:
            await self.layer.group_send(protocol.group_name(message.channel), layer_event(message))

    def publish(self, messages) -> None:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.group_send_all(messages))

    def close(self) -> None:
        # On the sender thread: channels_redis closes its connections when the loop closes.
        if self.loop is not None:
            self.loop.close()
            self.loop = None


class RedisPubSubPublisher:
    """channels_redis' RedisPubSubChannelLayer, published to as its group_send does.

    The same Redis channel names and serialisation, but a synchronous client and one
    pipelined round trip per batch: less than half the CPU of the async layer. That CPU
    is spent on the sender thread while the request thread waits for the GIL, so it is
    what a save pays for publishing. Used only for configurations it understands.
    """

    def __init__(self, layer, config: dict, timeout: float) -> None:
        import redis
        from channels_redis.utils import _consistent_hash, decode_hosts

        self.shard_of = _consistent_hash  # the layer's own choice of host for a name
        self.layer = layer
        self.prefix = config.get("prefix", "asgi")
        self.clients = []
        for host in decode_hosts(config.get("hosts")):
            options = {k: v for k, v in host.items() if k not in ("address", "max_connections")}
            options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
            if "address" in host:
                self.clients.append(redis.Redis.from_url(host["address"], **options))
            else:
                self.clients.append(redis.Redis(**options))

    @staticmethod
    def supports(layer, config: dict) -> bool:
        try:
            from channels_redis.pubsub import RedisPubSubChannelLayer
            from channels_redis.utils import decode_hosts
        except ImportError:  # another layer, without channels_redis installed
            return False

        if type(layer) is not RedisPubSubChannelLayer:
            return False
        return all("master_name" not in host for host in decode_hosts(config.get("hosts")))

    def publish(self, messages) -> None:
        pipes = {}
        for message in messages:
            name = f"{self.prefix}__group__{protocol.group_name(message.channel)}"
            index = self.shard_of(name, len(self.clients))
            if index not in pipes:
                pipes[index] = self.clients[index].pipeline(transaction=False)
            pipes[index].publish(name, self.layer.serialize(layer_event(message)))
        for pipe in pipes.values():
            pipe.execute()

    def close(self) -> None:
        for client in self.clients:
            client.close()


class ChannelsBackend(BaseBackend):
    """Send hints as channel-layer group messages.

    With a network layer (channels_redis) messages go through a BackgroundSender, so
    publishing never waits on Redis. The in-memory layer only reaches sockets of this
    process and its queues belong to the server's event loop, so there messages are handed
    to that loop directly.
    """

    options = ("LAYER", "QUEUE_SIZE", "RETRIES", "BACKOFF_FACTOR", "TIMEOUT")

    def __init__(
        self,
        LAYER="default",
        QUEUE_SIZE=10_000,
        RETRIES=3,
        BACKOFF_FACTOR=0.3,
        TIMEOUT=5.0,
        **rest,
    ):
        super().__init__(**rest)
        self.layer = get_channel_layer(LAYER)
        if self.layer is None:
            raise RuntimeError(f"pushgateway: no channel layer {LAYER!r} in CHANNEL_LAYERS")
        self.in_process = isinstance(self.layer, InMemoryChannelLayer)
        self._tasks: set[asyncio.Task] = set()
        config = settings.CHANNEL_LAYERS[LAYER].get("CONFIG", {})
        if RedisPubSubPublisher.supports(self.layer, config):
            self.publisher = RedisPubSubPublisher(self.layer, config, TIMEOUT)
        else:
            self.publisher = LayerPublisher(self.layer)
        self.sender = BackgroundSender(
            self.publisher.publish,
            name="channels",
            max_queue=QUEUE_SIZE,
            retries=RETRIES,
            backoff_factor=BACKOFF_FACTOR,
            on_exit=self.publisher.close,
        )
        self.stats = self.sender.stats

    def send_messages(self, messages) -> None:
        if not self.in_process:
            self.sender.submit(messages)
            return
        send_all = self.publisher.group_send_all  # a LayerPublisher: in-memory is not Redis
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Sync code: inside a sync view this runs on the server's loop (asgiref).
            async_to_sync(send_all)(messages)
        else:
            task = loop.create_task(send_all(messages))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def flush(self, timeout=None) -> bool:
        return self.sender.flush(timeout)

    def close(self) -> None:
        self.sender.close()

    @classmethod
    def check(cls, options):
        errors = super().check(options)
        alias = options.get("LAYER", "default")
        layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
        if alias not in layers:
            errors.append(
                Error(
                    f"PUSHGATEWAY uses the channel layer {alias!r}, but CHANNEL_LAYERS "
                    "does not define it.",
                    hint="Add it to CHANNEL_LAYERS, e.g. {'default': {'BACKEND': "
                    "'channels.layers.InMemoryChannelLayer'}}, or set OPTIONS['LAYER'].",
                    id="pushgateway.E005",
                )
            )
        elif layers[alias].get("BACKEND", "").endswith("InMemoryChannelLayer"):
            errors.append(
                Warning(
                    "The in-memory channel layer only reaches WebSockets of the same process: "
                    "hints published from other processes (manage.py shell, commands, workers, "
                    "a second server) are not delivered.",
                    hint="Use channels_redis (set REDIS_URL in this project) for more than one "
                    "process.",
                    id="pushgateway.W001",
                )
            )
        return errors
