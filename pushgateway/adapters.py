"""The one place that reaches into other libraries' internals.

Each adapter says what it relies on, and a contract test checks that against the installed
version, so a library release that changes it fails a test instead of breaking silently.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Awaitable, Coroutine
from typing import Any

# ---------------------------------------------------------------------------------------
# The ASGI servers' libraries, for channels_app: autobahn's debug formatting, daphne's
# Twisted transport, a server's `send` coroutine. Contract tests:
# tests/integration/test_server_adapters.py.

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
