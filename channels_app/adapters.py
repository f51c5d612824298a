"""The one place that touches private parts of the servers' libraries.

Each adapter says what it relies on; tests/test_adapters.py fails loudly when a library
release changes it, instead of the adapter breaking silently.
"""

from __future__ import annotations

import sys

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


def daphne_transport(send):
    """The Twisted transport behind daphne's `send`, or None under another server.

    daphne hands every application ``functools.partial(server.handle_reply, protocol)``;
    the protocol's transport is Twisted's. Relies on that partial and on the transport's
    ``dataBuffer``, ``offset`` and ``_tempDataLen`` (see pending_bytes)."""
    args = getattr(send, "args", None)
    transport = getattr(args[0], "transport", None) if args else None
    has_buffer = all(hasattr(transport, a) for a in ("dataBuffer", "offset", "_tempDataLen"))
    return transport if has_buffer else None


def pending_bytes(transport) -> int:
    """Bytes a Twisted TCP transport holds that the kernel has not taken yet."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
