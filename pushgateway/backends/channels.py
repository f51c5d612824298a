"""Publish through a Channels channel layer to the self-hosted WebSocket layer (channels_app).

Each message becomes one `group_send` to the channel's group, carrying the frame already
serialised with the channel's new stream position; every process's hub relays it to its
local sockets untouched. Positions live where the layer lives: in Redis for channels_redis
(shared by every process), in this process's memory for the in-memory layer.

Every Redis call of the sender thread has TIMEOUT, on either channels_redis layer, and is
retried RETRIES times by redis-py's Retry after a connection error or timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core.checks import Error, Warning
from django.utils.module_loading import import_string

from .. import protocol
from ..message import Message
from ..positions import DEFAULT_TTL, MemoryPositions, RedisPositions, redis_retry, retried_errors
from ..sender import BackgroundSender, DeliveryError
from .base import BaseBackend

# The channel-layer message type the hub handles.
EVENT_TYPE = "pushgateway.frame"


def layer_event(message: Message, position: protocol.Position) -> dict:
    return {
        "type": EVENT_TYPE,
        "channel": message.channel,
        "frame": message.frame(position),
        "epoch": position.epoch,
        "seq": position.seq,
        "t": time.time(),  # when it was published: the hub's delivery lag metric
    }


def redis_hosts(layer, config: dict) -> list | None:
    """The Redis hosts of a channels_redis layer (None for other layers, and for Sentinel,
    which the position store does not speak)."""
    module = type(layer).__module__
    if not module.startswith("channels_redis."):
        return None
    from channels_redis.utils import decode_hosts

    hosts = decode_hosts(config.get("hosts"))
    return None if any("master_name" in host for host in hosts) else hosts


@contextlib.contextmanager
def gave_up_after(attempts: int):
    """Errors that were retried reach the sender saying how many attempts were made."""
    try:
        yield
    except retried_errors() as exc:
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
                send = self.layer.group_send(protocol.group_name(message.channel), event)
                try:
                    await asyncio.wait_for(send, self.timeout)
                except TimeoutError:
                    raise TimeoutError(f"group_send had no answer in {self.timeout} s") from None
                sent += 1

        if self.retry is None:
            await send_rest()
        else:
            await self.retry.call_with_retry(send_rest, _nothing_to_clean)

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


async def _nothing_to_clean(error: Exception) -> None:
    pass


class RedisPubSubPublisher:
    """channels_redis' RedisPubSubChannelLayer, published to as its group_send does, with
    the position advanced in the same script: one round trip per batch and shard.

    The same Redis channel names and payloads (msgpack), but a synchronous client: less
    than half the CPU of the async layer, spent on the sender thread while the request
    thread waits for the GIL. Used only for configurations it understands.
    """

    prepare = None

    def __init__(self, positions: RedisPositions) -> None:
        self.positions = positions

    @staticmethod
    def supports(layer, config: dict) -> bool:
        try:
            from channels_redis.pubsub import RedisPubSubChannelLayer
        except ImportError:  # another layer, without channels_redis installed
            return False
        plain = config.get("serializer_format", "msgpack") == "msgpack"
        return (
            type(layer) is RedisPubSubChannelLayer
            and plain
            and not config.get("symmetric_encryption_keys")
        )

    def publish(self, messages) -> None:
        self.positions.advance_and_publish([(m.channel, m.head) for m in messages])

    def repair(self, channels) -> None:
        self.positions.advance_and_publish([(c, protocol.resync_head(c)) for c in channels])

    def close(self) -> None:
        self.positions.close()


class ChannelsBackend(BaseBackend):
    """Send hints as channel-layer group messages.

    With a network layer (channels_redis) messages go through a BackgroundSender, so
    publishing never waits on Redis. The in-memory layer only reaches sockets of this
    process and its queues belong to the server's event loop, so there messages are handed
    to that loop directly.
    """

    options = ("LAYER", "QUEUE_SIZE", "RETRIES", "BACKOFF_FACTOR", "TIMEOUT", "POSITION_TTL")

    def __init__(
        self,
        LAYER="default",
        QUEUE_SIZE=10_000,
        RETRIES=3,
        BACKOFF_FACTOR=0.3,
        TIMEOUT=5.0,
        POSITION_TTL=DEFAULT_TTL,
        **rest,
    ):
        super().__init__(**rest)
        self.layer_alias = LAYER
        self.layer = get_channel_layer(LAYER)
        if self.layer is None:
            raise RuntimeError(f"pushgateway: no channel layer {LAYER!r} in CHANNEL_LAYERS")
        self.timeout = TIMEOUT
        self.in_process = isinstance(self.layer, InMemoryChannelLayer)
        self._tasks: set[asyncio.Task] = set()
        config = settings.CHANNEL_LAYERS[LAYER].get("CONFIG", {})
        hosts = redis_hosts(self.layer, config)
        if hosts:
            self.positions = RedisPositions(
                hosts,
                prefix=config.get("prefix", "asgi"),
                ttl=POSITION_TTL,
                timeout=TIMEOUT,
                retries=RETRIES,
                backoff_factor=BACKOFF_FACTOR,
            )
        else:
            self.positions = MemoryPositions(POSITION_TTL)
        if hosts and RedisPubSubPublisher.supports(self.layer, config):
            self.publisher = RedisPubSubPublisher(self.positions)
        else:
            timeout, retry = None, None
            if not self.in_process:  # the sender thread's publishes: TIMEOUT and retries
                timeout = TIMEOUT
                with contextlib.suppress(ImportError):  # another layer, without redis-py
                    retry = redis_retry(RETRIES, BACKOFF_FACTOR, for_asyncio=True)
            self.publisher = LayerPublisher(self.layer, self.positions, timeout, retry)
        self.attempts = RETRIES + 1
        self.sender = BackgroundSender(
            self._publish,
            name="channels",
            prepare=self._prepare,
            repair=self._repair,
            max_queue=QUEUE_SIZE,
            on_exit=self.publisher.close,
            on_fork=self._forget_connections,
        )
        self.stats = self.sender.stats

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
        prepared = self.publisher.prepare(messages)
        self.sender._sent(len(messages))
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
        else:
            errors += redis_layer_warnings(alias, layers[alias])
        return errors


# redis-py 8's socket timeout when the hosts do not set one.
REDIS_PY_SOCKET_TIMEOUT = 5


def redis_layer_warnings(alias: str, layer: dict) -> list[Warning]:
    """What a channels_redis layer's hosts can get wrong for this backend and the hub."""
    path = layer.get("BACKEND", "")
    if not path.startswith("channels_redis."):
        return []
    try:
        from channels_redis.core import RedisChannelLayer
        from channels_redis.utils import decode_hosts

        layer_class = import_string(path)
        hosts = decode_hosts(layer.get("CONFIG", {}).get("hosts"))
    except (ImportError, ValueError):  # Channels reports a layer it cannot build
        return []
    warnings = []
    if any("master_name" in host for host in hosts):
        warnings.append(
            Warning(
                f"CHANNEL_LAYERS[{alias!r}] uses Redis Sentinel, which the position store "
                "does not speak: stream positions are kept in each process's memory, so "
                "pages refetch after hints published by other processes.",
                hint="Give the layer Redis hosts without master_name to share positions.",
                id="pushgateway.W003",
            )
        )
    receive_timeout = getattr(layer_class, "brpop_timeout", None)
    if issubclass(layer_class, RedisChannelLayer) and receive_timeout:
        timeouts = [host.get("socket_timeout", REDIS_PY_SOCKET_TIMEOUT) for host in hosts]
        if any(t is not None and t <= receive_timeout for t in timeouts):
            warnings.append(
                Warning(
                    f"CHANNEL_LAYERS[{alias!r}] hosts keep a socket timeout of "
                    f"{REDIS_PY_SOCKET_TIMEOUT} s or less (redis-py's default), which cuts "
                    f"the core layer's {receive_timeout} s blocking receive: the hub's "
                    "receive fails every few seconds and its pages are checked for resync "
                    "each time.",
                    hint="Give each host as a dict with 'socket_timeout': None, e.g. "
                    "{'address': REDIS_URL, 'socket_timeout': None, 'max_connections': 1000}; "
                    "the backend bounds its own calls with OPTIONS['TIMEOUT'].",
                    id="pushgateway.W002",
                )
            )
    return warnings
