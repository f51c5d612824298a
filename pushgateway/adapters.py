"""The one place that touches private parts or undocumented behaviour of other libraries.

Everything else in pushgateway uses public interfaces only. Each function here says what it
relies on, and has a contract test against the installed version (tests/unit/test_adapters.py
for Django and what needs no server, tests/integration/test_adapters.py for channels_redis on a
real Redis, tests/integration/test_server_adapters.py for the ASGI servers) that fails
loudly when a release changes it, instead of the adapter breaking silently.
"""

from __future__ import annotations

import inspect
import signal
import sys
import types
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable
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


def layer_group_shard(layer: Any, prefix: str, group: str, shards: int) -> int:
    """The index of the shard through which a channels_redis `layer` of `shards` hosts (with
    `prefix`) carries `group`'s messages: RedisPubSubChannelLayer places a group by its
    Redis channel (pubsub_group_channel), RedisChannelLayer by the group's name.

    Relies on what channels_redis_shard and pubsub_group_channel rely on, and on the core
    layer's ``consistent_hash(group)`` choosing where a group's members are kept."""
    try:
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:  # no channels_redis: one shard
        return 0
    if isinstance(layer, RedisPubSubChannelLayer):
        group = pubsub_group_channel(prefix, group)
    return channels_redis_shard(group, shards)


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


# ASGI servers -----------------------------------------------------------------------------

# For channels_app: autobahn's debug formatting, daphne's Twisted transport, a server's `send`
# coroutine, a server's own shutdown and listening sockets (contract tests:
# tests/integration/test_server_adapters.py).

# autobahn.websocket.protocol functions that call pformat() only to build a debug line.
AUTOBAHN_LOG_ONLY_PFORMAT = ("_connectionMade", "startHandshake")


def lazy_autobahn_debug_formatting() -> bool:
    """Skip autobahn's pretty-printing for debug lines that txaio will drop anyway.

    ``WebSocketProtocol._connectionMade`` runs ``pformat()`` over its whole configuration
    for every new connection and passes the text to ``log.debug``, which throws it away
    unless txaio's log level is debug or trace. Relies on autobahn.websocket.protocol
    calling the module-level name ``pformat`` from those functions; other callers (such as
    ``Timings.__str__``) keep the real pformat. Returns whether it was installed.
    """
    try:
        import txaio
        from autobahn.websocket import protocol
    except ImportError:
        return False
    real = protocol.pformat
    if getattr(real, "lazy_for", None) is not None:
        return True

    def pformat(obj, *args, **kwargs):
        if sys._getframe(1).f_code.co_name in AUTOBAHN_LOG_ONLY_PFORMAT and (
            txaio.get_global_log_level() not in ("debug", "trace")
        ):
            return ""
        return real(obj, *args, **kwargs)

    pformat.lazy_for = real
    protocol.pformat = pformat
    return True


def daphne_transport(send) -> Any | None:
    """The Twisted transport behind daphne's `send`, or None under another server.

    daphne hands every application ``functools.partial(server.handle_reply, protocol)``;
    the protocol's transport is Twisted's. Relies on that partial and on the transport's
    ``dataBuffer``, ``offset`` and ``_tempDataLen`` (see pending_bytes)."""
    args = getattr(send, "args", None)
    transport = getattr(args[0], "transport", None) if args else None
    has_buffer = all(hasattr(transport, a) for a in ("dataBuffer", "offset", "_tempDataLen"))
    return transport if has_buffer else None


def pending_bytes(transport) -> int:
    """Bytes a Twisted TCP transport holds that the kernel has not taken yet.

    Relies on Twisted's FileDescriptor keeping what it has not written in ``dataBuffer``
    (from ``offset`` on) and what was written since its last flush in ``_tempDataLen``."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def transport_closed(transport) -> bool:
    """Whether a Twisted TCP transport (daphne_transport) has lost its connection: the peer
    closed or reset it. daphne still hands the application the frames it read before, and
    drops what the application sends to a closed connection without a word, so this is how
    the consumer learns the client is gone before it reaches the disconnect event.

    Relies on Twisted's FileDescriptor setting ``disconnected`` in ``connectionLost``
    (tests/integration/test_server_adapters.py checks it under the installed daphne)."""
    return bool(getattr(transport, "disconnected", False))


def start_send_coroutine(sending: Awaitable) -> Awaitable | None:
    """Run a server's `send(message)` coroutine to its first wait, here and now.

    Returns None when it finished in that first step (daphne's `send` always does); else an
    awaitable that goes on with it from where it waits, for a task to await. Raises what
    the first step raised. The caller writes without a task or a coroutine of its own for
    each message, and still keeps the order of messages that must wait.

    Relies on the server's `send` being an ``async def`` (its result a coroutine that can be
    stepped with ``.send(None)``, as daphne's, uvicorn's and hypercorn's are) and on
    asyncio's task protocol: what that step yields (the future it waits on) is yielded
    again, unchanged, to the task that awaits the returned awaitable. Any other awaitable
    (granian's `send` returns a future) cannot be stepped: it is returned whole, to wait on.
    """
    if not inspect.iscoroutine(sending):
        return sending
    try:
        waiting_on = sending.send(None)
    except StopIteration:
        return None
    return _resume(sending, waiting_on)


@types.coroutine
def _resume(coroutine: Coroutine, waiting_on: Any):
    """Go on with a coroutine that was started by hand and yielded `waiting_on`."""
    yield waiting_on
    return (yield from coroutine)


def server_shutdown_handler() -> Callable[[int, Any], Any] | None:
    """The serving process's own SIGTERM handler, which does the server's whole shutdown; None
    where there is no Python handler to call later (not under a server, SIG_DFL).

    Relies on daphne and uvicorn installing one with ``signal.signal`` before they serve a
    request, and on it doing the whole shutdown when called later, from the event loop, with
    the signal's number: daphne through Twisted's reactor (``reactor.sigTerm``, installed
    when the reactor starts running: it stops the reactor), uvicorn in
    ``Server.capture_signals`` for the life of ``Server.serve()`` (``Server.handle_exit``:
    the main loop then closes what is left and exits), also under gunicorn's
    ``uvicorn.workers.UvicornWorker``. Whoever replaces the handler must call this one."""
    handler = signal.getsignal(signal.SIGTERM)
    return handler if callable(handler) else None


def stop_listening(handler: Callable) -> int:
    """Stop accepting connections in this process, as the server's own shutdown does first;
    returns how many listening sockets that was. `handler` is server_shutdown_handler()'s.

    Relies on the object that handler is bound to: uvicorn's ``Server`` keeps the asyncio
    servers it accepts on in ``servers`` (``close()`` stops accepting; under gunicorn the
    master and the other workers keep the shared socket and accept what comes); Twisted's
    reactor (daphne) lists its listening ports among its readers (``getReaders()``, ports
    providing ``IListeningPort``, whose ``stopListening()`` closes them)."""
    owner = getattr(handler, "__self__", None)
    servers = getattr(owner, "servers", None)
    if servers is not None:
        for server in servers:
            server.close()
        return len(servers)
    if not hasattr(owner, "getReaders"):
        return 0
    from twisted.internet.interfaces import IListeningPort

    ports = [reader for reader in owner.getReaders() if IListeningPort.providedBy(reader)]
    for port in ports:
        port.stopListening()
    return len(ports)
