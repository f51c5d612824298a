"""Which pages may open the push gateway: the Origin check of the socket and of the proxy.

The WebSocket consumer and the WebSocket-over-HTTP view refuse a connection whose Origin
does not match ALLOWED_HOSTS, exactly as Channels' AllowedHostsOriginValidator decides; both
ask here, so neither depends on the other.
"""

from __future__ import annotations

from urllib.parse import urlparse

from channels.security.websocket import AllowedHostsOriginValidator


def origin_allowed(origin: str | None) -> bool:
    """Whether an Origin header value matches ALLOWED_HOSTS, as Channels'
    AllowedHostsOriginValidator decides (it refuses a missing Origin)."""
    try:
        parsed = urlparse(origin) if origin is not None else None
    except ValueError:
        return False
    return AllowedHostsOriginValidator(None).valid_origin(parsed)


def scope_origin(scope: dict) -> str | None:
    """The Origin header of an ASGI connection scope, if it has one."""
    origin = next((value for name, value in scope["headers"] if name == b"origin"), None)
    return origin.decode("latin1") if origin is not None else None
