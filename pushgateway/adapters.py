"""The one place that touches private parts or undocumented behaviour of other libraries.

Everything else in pushgateway uses public interfaces only. Each function here says what it
relies on, and has a contract test against the installed version (tests/unit/test_adapters.py
for Django and what needs no server, tests/integration/test_adapters.py for channels_redis on a
real Redis) that fails loudly when a release changes it, instead of the adapter breaking
silently. channels_app's server adapters are to join them here.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any

# channels_redis ---------------------------------------------------------------------------

#: The `prefix` of a channels_redis layer whose CONFIG sets none (documented).
CHANNELS_REDIS_PREFIX = "asgi"


def channels_redis_shard(name: str, shards: int) -> int:
    """The index of the shard a channels_redis layer of `shards` hosts keeps `name` on.

    Relies on ``channels_redis.utils._consistent_hash``, which both layers use to place a
    channel or group (the core layer's public ``consistent_hash`` method wraps it; the pub/sub
    layer has no public one)."""
    if shards == 1:
        return 0
    from channels_redis.utils import _consistent_hash

    return _consistent_hash(name, shards)


def pubsub_group_channel(prefix: str, group: str) -> str:
    """The Redis pub/sub channel RedisPubSubChannelLayer publishes a group's messages on.

    Relies on ``RedisPubSubLoopLayer._get_group_channel_name``: ``f"{prefix}__group__{group}"``
    (also the name its shard is chosen by)."""
    return f"{prefix}__group__{group}"


def pubsub_own_channel_start(prefix: str, channel_prefix: str) -> str:
    """The start of the Redis pub/sub channel RedisPubSubChannelLayer subscribes to for a
    channel it makes with ``new_channel(channel_prefix)``; random hex digits complete it.

    Relies on ``RedisPubSubLoopLayer.new_channel``: the channel's name is
    ``f"{prefix}{channel_prefix}{uuid4().hex}"``, subscribed to under that same name."""
    return f"{prefix}{channel_prefix}"


#: The Lua (Redis scripting) function that encodes a message as RedisPubSubChannelLayer's
#: default serializer does: a bare msgpack map (see pubsub_payload_is_msgpack).
PUBSUB_PACK_LUA = "cmsgpack.pack"


def pubsub_payload_is_msgpack(config: dict[str, Any]) -> bool:
    """Whether a RedisPubSubChannelLayer with this CONFIG sends each message as the bare
    msgpack map of it, which a Redis script can write (PUBSUB_PACK_LUA).

    Relies on channels_redis' serializers: ``serializer_format`` "msgpack" (the default) packs
    with ``msgpack.packb``; the pub/sub layer adds no random prefix; only
    ``symmetric_encryption_keys`` would wrap it."""
    plain = config.get("serializer_format", "msgpack") == "msgpack"
    return plain and not config.get("symmetric_encryption_keys")


def decode_pubsub_payload(payload: bytes) -> dict[str, Any]:
    """A message as a subscriber of the pub/sub layer reads it off Redis (the inverse of the
    layer's serializer under pubsub_payload_is_msgpack). Relies on the same."""
    import msgpack

    return msgpack.unpackb(payload)


def channels_redis_hosts(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The host entries of a channels_redis layer's CONFIG, as its layers read them (URLs
    become ``{"address": url}``; ``master_name`` marks Sentinel).

    Relies on ``channels_redis.utils.decode_hosts`` (not documented; both layers call it)."""
    from channels_redis.utils import decode_hosts

    return decode_hosts(config.get("hosts"))


def core_layer_receive_timeout(layer_class: type) -> float | None:
    """Seconds channels_redis' core RedisChannelLayer (or a subclass) blocks in one receive
    (BRPOP); None for other layers.

    Relies on its class attribute ``brpop_timeout`` (not documented)."""
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        return None
    if not issubclass(layer_class, RedisChannelLayer):
        return None
    return getattr(layer_class, "brpop_timeout", None)


def redis_default_socket_timeout() -> float | None:
    """The socket timeout redis-py gives the layers' connections when a host sets none (5 s
    since redis-py 8, none before).

    Relies on a ``redis.asyncio.Connection`` built without arguments (nothing is connected)
    keeping its timeout in ``socket_timeout``."""
    from redis.asyncio import Connection

    return Connection().socket_timeout


# Django -----------------------------------------------------------------------------------

# connection -> (its run_on_commit list when the index was built, the index).
_on_commit_indexes: weakref.WeakKeyDictionary[Any, tuple[list, set]] = weakref.WeakKeyDictionary()


def on_commit_keys(
    connection: Any, keys_of: Callable[[Callable[[], Any]], Iterable[Hashable]]
) -> set:
    """The keys (`keys_of(callback)`) of the callbacks waiting for this transaction's commit:
    a set the caller adds the keys of callbacks it registers to. Built once per list of
    callbacks, so a transaction of many saves costs one scan, not one per save.

    Relies on Django's ``connection.run_on_commit``: a list of ``(savepoint ids, callback,
    robust)`` that ``on_commit`` appends to and that is replaced by a new list whenever
    callbacks are dropped (rollback of the transaction or of a savepoint) or run (commit). An
    index built for one list object therefore stays exact while that list is the current one.
    """
    hooks = connection.run_on_commit
    cached = _on_commit_indexes.get(connection)
    if cached is None or cached[0] is not hooks:
        index = {key for _, callback, _ in hooks for key in keys_of(callback)}
        cached = _on_commit_indexes[connection] = (hooks, index)
    return cached[1]
