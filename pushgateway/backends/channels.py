"""Publish through a Channels channel layer to the self-hosted WebSocket layer (channels_app).

Each message becomes one event (layer.FrameEvent) to its channel's group, carrying the frame
already serialised with the channel's new stream position; every process's hub relays it to
its local sockets untouched. Positions live where the layer lives: in Redis for channels_redis
(shared by every process), in this process's memory for the in-memory layer. On channels_redis'
pub/sub layer one Redis script advances and publishes (pubsub.py); any other layer gets its
positions advanced first and a group_send per message (LayerPublisher).

Every Redis call of the sender thread has TIMEOUT and is retried RETRIES times by redis-py's
Retry after a connection error or timeout (NetworkOptions).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core.checks import Error, Warning

from .. import protocol, redisretry
from ..adapters import CHANNELS_REDIS_PREFIX, channels_redis_hosts, layer_group_shard
from ..layer import FrameEvent, frame_event, group_name
from ..message import Message
from ..positions import RedisPositions
from ..sender import BackgroundSender, DeliveryError
from .base import BaseBackend, NetworkOptions, logger
from .channels_checks import channels_redis_layers, is_in_memory, redis_layer_warnings
from .pubsub import RedisPubSubPublisher


@dataclasses.dataclass(frozen=True)
class ChannelsOptions(NetworkOptions):
    """ChannelsBackend's OPTIONS: the network options, and which layer."""

    #: The CHANNEL_LAYERS alias to publish on (the hub subscribes on the same).
    LAYER: str = "default"


def layer_event(message: Message, position: protocol.Position) -> FrameEvent:
    return frame_event(message.channel, message.frame(position), position)


def redis_hosts(layer: Any, config: dict) -> list | None:
    """The Redis hosts of a channels_redis layer (None for other layers); Sentinel-managed
    ones too, which the position store and the publisher follow as the layers do."""
    if not isinstance(layer, channels_redis_layers()):
        return None
    return channels_redis_hosts(config)


@contextlib.contextmanager
def gave_up_after(attempts: int):
    """Errors that were retried reach the sender saying how many attempts were made."""
    try:
        yield
    except redisretry.retried_errors() as exc:
        raise DeliveryError(str(exc) or repr(exc), attempts=attempts) from exc


class LayerPublisher:
    """Any channel layer: positions advanced first (one round trip per batch), then a
    group_send per message on an event loop owned by the sender thread.

    Each group_send has `timeout` (channels_redis' core layer has none of its own: a Redis
    that stops answering would hold the sender thread for good); `retry` (redis-py's async
    Retry) resumes a batch at the message that failed.
    """

    def __init__(self, layer, positions, timeout: float | None = None, retry=None) -> None:
        self.layer = layer
        self.positions = positions
        self.timeout = timeout
        self.retry = retry
        self.loop = None

    async def group_send_all(self, messages, positions) -> None:
        """A group_send per message; after a failure `retry` resumes at that message."""
        sent = 0

        async def send_rest() -> None:
            nonlocal sent
            for message, position in zip(messages[sent:], positions[sent:], strict=True):
                event = layer_event(message, position)
                send = self.layer.group_send(group_name(message.channel), event)
                try:
                    await asyncio.wait_for(send, self.timeout)
                except TimeoutError:
                    raise TimeoutError(f"group_send had no answer in {self.timeout} s") from None
                sent += 1

        await redisretry.acall(self.retry, send_rest)

    def prepare(self, messages):
        return messages, self.positions.advance([m.channel for m in messages])

    def publish(self, prepared) -> None:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.group_send_all(*prepared))

    def repair(self, channels) -> None:
        self.publish(self.prepare([Message(channel, resync=True) for channel in channels]))

    def forget_connections(self) -> None:
        # The loop, and the connections channels_redis keeps per loop, belong to the
        # process that made them: the next publish makes a new loop.
        self.loop = None

    def close(self) -> None:
        # On the sender thread: channels_redis closes its connections when the loop closes.
        if self.loop is not None:
            self.loop.close()
            self.loop = None


class ChannelsBackend(BaseBackend):
    """Send hints as channel-layer group messages.

    With a network layer (channels_redis) messages go through a BackgroundSender, so
    publishing never waits on Redis. The in-memory layer only reaches sockets of this
    process and its queues belong to the server's event loop, so there messages are handed
    to that loop directly.
    """

    #: Its hints reach the pages through this project's own WebSocket server (channels_app).
    serves_websockets = True

    #: Its OPTIONS, with their defaults, besides the common ones.
    options_type = ChannelsOptions
    options = ChannelsOptions.names()

    def __init__(self, **options: Any) -> None:
        config = ChannelsOptions.take(options)
        super().__init__(**options)
        self.layer_alias = config.LAYER
        self.layer = get_channel_layer(config.LAYER)
        if self.layer is None:
            raise RuntimeError(f"pushgateway: no channel layer {config.LAYER!r} in CHANNEL_LAYERS")
        #: Seconds each layer call may take (channels_app's hub bounds its own with it too).
        self.timeout = config.TIMEOUT
        #: Set by channels_app's hub when this process serves WebSockets.
        self.serving = False
        self._said_nobody_listens = False
        self.in_process = isinstance(self.layer, InMemoryChannelLayer)
        self._tasks: set[asyncio.Task] = set()
        self.positions, self.publisher = self._publisher(config)
        self.attempts = config.attempts
        self.sender = BackgroundSender(
            self._publish,
            name="channels",
            prepare=self._prepare,
            repair=self._repair,
            max_queue=config.QUEUE_SIZE,
            on_exit=self.publisher.close,
            on_fork=self._forget_connections,
            coalesce=self.coalesce,
        )
        self.stats = self.sender.stats

    def _publisher(self, config: ChannelsOptions) -> tuple[Any, Any]:
        """The position store and the publisher this layer's configuration allows."""
        layer_config = settings.CHANNEL_LAYERS[config.LAYER].get("CONFIG", {})
        hosts = redis_hosts(self.layer, layer_config)
        prefix = layer_config.get("prefix", CHANNELS_REDIS_PREFIX)
        self.shards, self.prefix = len(hosts or ()) or 1, prefix
        positions = config.position_store(hosts, prefix=prefix)
        if hosts and RedisPubSubPublisher.supports(self.layer, layer_config):
            return positions, RedisPubSubPublisher(positions)
        timeout, retry = None, None
        if not self.in_process:  # the sender thread's publishes: TIMEOUT and retries
            timeout = config.TIMEOUT
            with contextlib.suppress(ImportError):  # another layer, without redis-py
                retry = config.redis_retry(for_asyncio=True)
        return positions, LayerPublisher(self.layer, positions, timeout, retry)

    def heartbeat_groups(self, base: str) -> list[str]:
        """Groups named `base`.N, one carried by each shard of the layer: a hub's heartbeat
        through each of them notices an outage of any shard (channels_app's hub)."""
        found: dict[int, str] = {}
        for n in itertools.count():
            group = f"{base}.{n}"
            found.setdefault(layer_group_shard(self.layer, self.prefix, group, self.shards), group)
            if len(found) == self.shards:
                return [found[index] for index in sorted(found)]
        raise AssertionError("unreachable")

    def _forget_connections(self) -> None:
        # In a forked child: connections of its own; the parent's stay the parent's.
        if isinstance(self.positions, RedisPositions):
            self.positions.forget_connections()
        if isinstance(self.publisher, LayerPublisher):
            self.publisher.forget_connections()

    # The sender thread's calls, each retried by redis-py's Retry.

    def _prepare(self, messages):
        if self.publisher.prepare is None:
            return messages
        with gave_up_after(self.attempts):
            return self.publisher.prepare(messages)

    def _publish(self, prepared) -> None:
        with gave_up_after(self.attempts):
            self.publisher.publish(prepared)

    def _repair(self, channels) -> None:
        with gave_up_after(self.attempts):
            self.publisher.repair(channels)

    def send_messages(self, messages) -> None:
        if not self.in_process:
            self.sender.submit(messages)
            return
        # In-memory: this process is the whole system, positions advance at once.
        if not self.serving and not self._said_nobody_listens:
            self._said_nobody_listens = True
            logger.warning(
                "pushgateway: a hint went out on the in-memory channel layer from a process "
                "that has served no WebSocket (manage.py shell, a command, a worker?): it "
                "reaches only pages connected to this process. Publish from the server's "
                "process, or use channels_redis (docs/deployment.md)."
            )
        prepared = self.publisher.prepare(messages)
        self.sender.count_sent(len(messages))
        send_all = self.publisher.group_send_all
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Sync code: inside a sync view this runs on the server's loop (asgiref).
            async_to_sync(send_all)(*prepared)
        else:
            task = loop.create_task(send_all(*prepared))
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
        else:
            errors += redis_layer_warnings(alias, layers[alias])
        return errors

    @classmethod
    def check_deployment(cls, options):
        """For `manage.py check --deploy`: one process is fine while developing."""
        alias = options.get("LAYER", "default")
        layer = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get(alias, {})
        if not is_in_memory(layer):
            return []
        return [
            Warning(
                f"CHANNEL_LAYERS[{alias!r}] is the in-memory layer: hints reach only the "
                "WebSockets of the process that publishes them, so a second server process, "
                "a worker or a management command cannot reach any page.",
                hint="With more than one process use channels_redis' "
                "RedisPubSubChannelLayer (docs/deployment.md, 'One process or many').",
                id="pushgateway.W001",
            )
        ]
