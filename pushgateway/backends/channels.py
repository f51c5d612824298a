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


class ChannelsBackend(BaseBackend):
    """Send hints as channel-layer group messages.

    With a network layer (channels_redis) messages go through a BackgroundSender with its
    own event loop, so publishing never waits on Redis. The in-memory layer only reaches
    sockets of this process and its queues belong to the server's event loop, so there
    messages are handed to that loop directly.
    """

    options = ("LAYER", "QUEUE_SIZE", "RETRIES", "BACKOFF_FACTOR")

    def __init__(self, LAYER="default", QUEUE_SIZE=10_000, RETRIES=3, BACKOFF_FACTOR=0.3, **rest):
        super().__init__(**rest)
        self.alias = LAYER
        self.layer = get_channel_layer(LAYER)
        if self.layer is None:
            raise RuntimeError(f"pushgateway: no channel layer {LAYER!r} in CHANNEL_LAYERS")
        self.in_process = isinstance(self.layer, InMemoryChannelLayer)
        self._tasks: set[asyncio.Task] = set()
        self.sender = BackgroundSender(
            self._deliver,
            name="channels",
            max_queue=QUEUE_SIZE,
            retries=RETRIES,
            backoff_factor=BACKOFF_FACTOR,
            on_thread_start=lambda: asyncio.set_event_loop(asyncio.new_event_loop()),
        )
        self.stats = self.sender.stats

    async def _group_send_all(self, messages) -> None:
        for message in messages:
            await self.layer.group_send(protocol.group_name(message.channel), layer_event(message))

    def _deliver(self, messages) -> None:
        # Runs in the sender thread, on the event loop that thread owns.
        asyncio.get_event_loop().run_until_complete(self._group_send_all(messages))

    def send_messages(self, messages) -> None:
        if not self.in_process:
            self.sender.submit(messages)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Sync code: inside a sync view this runs on the server's loop (asgiref).
            async_to_sync(self._group_send_all)(messages)
        else:
            task = loop.create_task(self._group_send_all(messages))
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
