"""Publish to channels_redis' RedisPubSubChannelLayer from a Redis script, positions included.

The script advances each channel's position and publishes its frame on the Redis channel the
layer uses for the channel's group, in one round trip per batch and shard: the frame is
serialised there with the position it must carry, and the payload is what the layer's
subscribers read (adapters.py says which of channels_redis' habits that relies on). Python's
definitions are the only ones: the frame's position text comes from protocol.py's formats and
the event's fields from layer.py, so a frame published here equals the one Python builds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from .. import protocol
from ..adapters import PUBSUB_PACK_LUA, pubsub_payload_is_msgpack
from ..layer import EVENT_FIELDS, EVENT_TYPE
from ..message import Message
from ..positions import ADVANCE_ONE_LUA, RedisPositions, new_epoch


def lua_string(text: str) -> str:
    """`text` as a Lua string literal (ASCII only: Lua 5.1 knows no \\u escapes)."""
    if not text.isascii():
        raise ValueError(f"not ASCII: {text!r}")
    return json.dumps(text)


def lua_event(**values: str) -> str:
    """The layer event (layer.FrameEvent) as a Lua table constructor, one Lua expression for
    each of its fields but `type`."""
    values["type"] = lua_string(EVENT_TYPE)
    if set(values) != set(EVENT_FIELDS):
        raise ValueError(f"the event has the fields {EVENT_FIELDS}, not {tuple(values)}")
    return "{" + ", ".join(f"{name} = {values[name]}" for name in EVENT_FIELDS) + "}"


_POSITION_FORMAT = lua_string(protocol.POSITION_FORMAT)
_POSITIONED_FORMAT = lua_string(protocol.POSITIONED_FORMAT)
_EVENT = lua_event(
    channel="ARGV[base + 1]", frame="frame", epoch="epoch", seq="seq", t="tonumber(ARGV[3])"
)

# KEYS: position keys. ARGV: the ttl, a fresh epoch and the publish time, then (pub/sub
# channel, channel, frame head) per key. Advances each position and publishes its frame.
ADVANCE_AND_PUBLISH_LUA = f"""{ADVANCE_ONE_LUA}
for i, key in ipairs(KEYS) do
  local epoch, seq = advance(key)
  local base = 3 * i + 1
  local position = string.format({_POSITION_FORMAT}, cjson.encode(epoch), seq)
  local frame = string.format({_POSITIONED_FORMAT}, ARGV[base + 2], position)
  redis.call('PUBLISH', ARGV[base], {PUBSUB_PACK_LUA}({_EVENT}))
end
return #KEYS
"""


class RedisPubSubPublisher:
    """channels_redis' RedisPubSubChannelLayer, published to as its group_send does, with
    the position advanced in the same script: one round trip per batch and shard.

    A synchronous client: less CPU than the async layer, spent on the sender thread while
    the request thread waits for the GIL. Used only for configurations it understands
    (`supports`).
    """

    #: Positions are advanced by the script itself, not before.
    prepare = None

    def __init__(self, positions: RedisPositions) -> None:
        self.positions = positions

    @staticmethod
    def supports(layer: Any, config: dict[str, Any]) -> bool:
        try:
            from channels_redis.pubsub import RedisPubSubChannelLayer
        except ImportError:  # another layer, without channels_redis installed
            return False
        # Exactly the layer (a subclass may name or serialise otherwise).
        return type(layer) is RedisPubSubChannelLayer and pubsub_payload_is_msgpack(config)

    def publish(self, messages: Sequence[Message]) -> None:
        self.advance_and_publish([(m.channel, m.head) for m in messages])

    def repair(self, channels: Sequence[str]) -> None:
        self.advance_and_publish([(c, protocol.resync_head(c)) for c in channels])

    def advance_and_publish(self, items: Sequence[tuple[str, str]]) -> None:
        """For each (channel, frame head): advance the position, publish the frame."""
        store = self.positions
        heads: dict[str, list[str]] = {}
        for channel, head in items:
            heads.setdefault(channel, []).append(head)
        for index, names in store.by_shard(channel for channel, _ in items).items():
            args: list[Any] = [store.ttl, new_epoch(), repr(time.time())]
            for channel in names:
                args += [store.pubsub_name(channel), channel, heads[channel].pop(0)]
            keys = [store.key(c) for c in names]
            store.run(index, ADVANCE_AND_PUBLISH_LUA, keys, args)

    def close(self) -> None:
        self.positions.close()
