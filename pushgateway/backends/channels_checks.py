"""What a CHANNEL_LAYERS entry can get wrong for ChannelsBackend, read from settings alone.

System checks run before any layer is built, so the layer's class is imported from its
dotted path and recognised by class, never by name; a path that cannot be imported is left
for Channels to report.
"""

from __future__ import annotations

from typing import Any

from channels.layers import InMemoryChannelLayer
from django.core.checks import Warning
from django.utils.module_loading import import_string

from ..adapters import (
    channels_redis_hosts,
    core_layer_receive_timeout,
    redis_default_socket_timeout,
)


def channels_redis_layers() -> tuple[type, ...]:
    """channels_redis' layer classes (none when it is not installed)."""
    try:
        from channels_redis.core import RedisChannelLayer
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:
        return ()
    return (RedisChannelLayer, RedisPubSubChannelLayer)


def layer_class(layer: dict[str, Any]) -> type | None:
    """The class a CHANNEL_LAYERS entry names, or None if it cannot be imported."""
    try:
        found = import_string(layer.get("BACKEND", ""))
    except ImportError:
        return None
    return found if isinstance(found, type) else None


def is_in_memory(layer: dict[str, Any]) -> bool:
    found = layer_class(layer)
    return found is not None and issubclass(found, InMemoryChannelLayer)


def redis_layer_warnings(alias: str, layer: dict[str, Any]) -> list[Warning]:
    """What a channels_redis layer's hosts can get wrong for this backend and the hub."""
    found = layer_class(layer)
    if found is None or not issubclass(found, channels_redis_layers()):
        return []
    try:
        hosts = channels_redis_hosts(layer.get("CONFIG", {}))
    except ValueError:  # Channels reports a layer it cannot build
        return []
    warnings = []
    receive_timeout = core_layer_receive_timeout(found)
    if receive_timeout and _socket_timeout_cuts(hosts, receive_timeout):
        warnings.append(
            Warning(
                f"CHANNEL_LAYERS[{alias!r}] hosts keep a socket timeout of "
                f"{receive_timeout} s or less (redis-py's default: "
                f"{redis_default_socket_timeout()} s), which cuts the core layer's "
                f"{receive_timeout} s blocking receive: the hub's "
                "receive fails every few seconds and its pages are checked for resync "
                "each time.",
                hint="Give each host as a dict with 'socket_timeout': None, e.g. "
                "{'address': REDIS_URL, 'socket_timeout': None, 'max_connections': 1000}; "
                "the backend bounds its own calls with OPTIONS['TIMEOUT'].",
                id="pushgateway.W002",
            )
        )
    return warnings


def _socket_timeout_cuts(hosts: list[dict[str, Any]], receive_timeout: float) -> bool:
    default = redis_default_socket_timeout()
    timeouts = [host.get("socket_timeout", default) for host in hosts]
    return any(t is not None and t <= receive_timeout for t in timeouts)
