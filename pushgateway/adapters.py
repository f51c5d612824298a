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


# Frame once, write many: a socket's transport behind the server's `send` ------------------

# For channels_app.consumer (contract tests: tests/integration/test_server_adapters.py). The
# hub builds each hint's frame bytes once (channels_app.frames); a FrameWriter hands them to
# one socket's transport, as the server itself would write a frame it built. Every writer is
# used only from the event loop thread (where the server writes its own frames: ping, pong,
# close), writes a whole frame in one transport.write, and refuses (write() returns False,
# the caller sends through ASGI `send` instead) whenever the server's own framing would differ
# or must not be bypassed: the handshake is not complete, the socket is closing or closed, or
# an extension (permessage-deflate) was negotiated.


class FrameWriter:
    """Writes whole server frames to one socket's transport, bypassing the server's framing.

    ``pending()`` is what the transport holds that the kernel has not taken yet (the
    slow-reader cap counts it); ``write(frame)`` writes one frame built by
    channels_app.frames and returns True, or returns False without writing anything when
    the server must frame this message itself."""

    __slots__ = ("owner", "transport", "open_state")

    def __init__(self, owner: Any, transport: Any, open_state: Any = None) -> None:
        self.owner = owner
        self.transport = transport
        self.open_state = open_state  # the library's "open" state, looked up once

    def pending(self) -> int:
        return self.transport.get_write_buffer_size()

    def writable(self) -> bool:  # pragma: no cover - every subclass says
        raise NotImplementedError

    def write(self, frame: bytes) -> bool:
        if not self.writable():
            return False
        self.transport.write(frame)
        return True


class TwistedFrameWriter(FrameWriter):
    """daphne: autobahn's WebSocketServerProtocol on a plain Twisted TCP transport.

    Relies on daphne_transport's parts, on autobahn's ``state`` (``STATE_OPEN``),
    ``send_state`` (``SEND_STATE_GROUND``: not inside a fragmented message) and
    ``_perMessageCompress`` (None: no permessage-deflate), and on Twisted's TCP
    ``Connection``: ``socket``, ``connected``, ``disconnecting``. When Twisted holds nothing
    unwritten, the frame goes to the kernel at once with one ``send()`` (Twisted's own
    ``write`` would register for writability and write on the next reactor turn: two
    ``epoll_ctl`` calls more per socket and broadcast); what the kernel does not take is
    handed to ``transport.write``, behind which everything later queues, in order."""

    __slots__ = ()

    def pending(self) -> int:
        return pending_bytes(self.transport)

    def writable(self) -> bool:
        protocol, transport = self.owner, self.transport
        return (
            protocol.state == protocol.STATE_OPEN
            and protocol.send_state == protocol.SEND_STATE_GROUND
            and protocol._perMessageCompress is None
            and transport.connected
            and not transport.disconnecting
        )

    def write(self, frame: bytes) -> bool:
        if not self.writable():
            return False
        transport = self.transport
        sent = 0
        if not pending_bytes(transport):
            try:
                sent = transport.socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # Twisted finds the error on its own write and closes
                sent = 0
        if sent < len(frame):
            transport.write(frame[sent:] if sent else frame)
        return True


class SansIOFrameWriter(FrameWriter):
    """uvicorn ``--ws websockets-sansio``: websockets' ServerProtocol on an asyncio transport.

    Relies on uvicorn's WebSocketsSansIOProtocol keeping ``conn`` (websockets'
    ``ServerProtocol``), ``transport`` and ``close_sent``, and on ``conn.state`` (OPEN once
    the handshake response went out) and ``conn.extensions`` (negotiated ones)."""

    __slots__ = ()

    def writable(self) -> bool:
        # conn is OPEN only once the application accepted (not after an HTTP rejection).
        conn = self.owner.conn
        return (
            conn.state is self.open_state
            and not self.owner.close_sent
            and not conn.extensions
            and not self.transport.is_closing()
        )


class LegacyFrameWriter(FrameWriter):
    """uvicorn ``--ws websockets``: websockets' legacy WebSocketServerProtocol.

    Relies on its ``state`` (OPEN once the handshake completed), ``extensions`` (negotiated
    ones), ``transport`` and ``_paused`` (the transport asked it to stop writing), and on
    uvicorn's ``closed_event``. (uvicorn never sends fragmented messages, so no frame of the
    server's can be in the middle of one.) While paused it refuses: the protocol lets only
    one writer wait for the transport to drain (a second one, such as its answer to a ping
    while a `send` waits, fails the connection), so frames then go through `send` and wait
    behind it in the consumer, as without a writer."""

    __slots__ = ()

    def writable(self) -> bool:
        owner = self.owner
        return (
            owner.state is self.open_state
            and not owner._paused
            and not owner.extensions
            and not owner.closed_event.is_set()
            and not self.transport.is_closing()
        )


class WsprotoFrameWriter(FrameWriter):
    """uvicorn ``--ws wsproto``: wsproto's WSConnection on an asyncio transport.

    Relies on uvicorn's WSProtocol keeping ``conn``, ``transport``, ``handshake_complete``
    and ``close_sent``, and on wsproto keeping the open connection in ``conn.connection``
    and its extensions (offered by the server; ``enabled()`` once the client accepted) in
    ``connection._proto.extensions``."""

    __slots__ = ()

    def writable(self) -> bool:
        owner = self.owner
        connection = owner.conn.connection
        return (
            owner.handshake_complete
            and not owner.close_sent
            and connection is not None
            and connection.state is self.open_state
            and not any(e.enabled() for e in connection._proto.extensions)
            and not self.transport.is_closing()
        )


class TransportBytes(FrameWriter):
    """A Twisted transport under daphne whose unsent bytes are counted, written only by the
    server (channels_app.stream's HTTP responses): ``write`` always refuses."""

    __slots__ = ()

    def pending(self) -> int:
        return pending_bytes(self.transport)

    def writable(self) -> bool:
        return False


def transport_bytes(send) -> TransportBytes | None:
    """What counts the bytes daphne's transport behind `send` holds, or None under another
    server. Relies on what daphne_transport relies on."""
    transport = daphne_transport(send)
    return None if transport is None else TransportBytes(None, transport)


# uvicorn's WebSocket protocol classes, by module and name, and their writers.
UVICORN_WRITERS = {
    ("uvicorn.protocols.websockets.websockets_sansio_impl", "send"): SansIOFrameWriter,
    ("uvicorn.protocols.websockets.websockets_impl", "asgi_send"): LegacyFrameWriter,
    ("uvicorn.protocols.websockets.wsproto_impl", "send"): WsprotoFrameWriter,
}


def frame_writer(send) -> FrameWriter | None:
    """The FrameWriter for the socket behind a server's ASGI `send`, or None when no adapter
    knows the server (hypercorn, granian, a TLS transport...): then `send` it is.

    Relies on daphne's `send` (see daphne_transport) and on uvicorn handing the application
    a bound method of its protocol object, named as in UVICORN_WRITERS."""
    transport = daphne_transport(send)
    if transport is not None:
        from twisted.internet.tcp import Connection

        protocol = send.args[0]
        plain = isinstance(transport, Connection) and not getattr(transport, "TLS", False)
        if plain and hasattr(protocol, "_perMessageCompress"):
            return TwistedFrameWriter(protocol, transport)
        return None
    owner = getattr(send, "__self__", None)
    kind = UVICORN_WRITERS.get((type(owner).__module__, getattr(send, "__name__", None)))
    transport = getattr(owner, "transport", None)
    if kind is None or not hasattr(transport, "get_write_buffer_size"):
        return None
    if kind is WsprotoFrameWriter:
        from wsproto.connection import ConnectionState as State
    else:
        from websockets.protocol import State
    return kind(owner, transport, State.OPEN)
