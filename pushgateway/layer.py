"""How a hint travels through a Channels layer: the group that carries a channel, and the event.

Both publishers write it (backends/channels.py with group_send, backends/pubsub.py from a
Redis script) and channels_app's hub reads it, so it is defined once, here. The event carries
the frame already serialised with its position: every hub writes it to its sockets untouched.
"""

from __future__ import annotations

import hashlib
import time
from typing import TypedDict

from channels.layers import BaseChannelLayer

from .protocol import Position

#: The `type` of the event that carries a frame (the hub's handler).
EVENT_TYPE = "pushgateway.frame"

GROUP_PREFIX = "pushgateway."
#: The prefix of a hashed group name. Every plain group name starts with GROUP_PREFIX ('.'
#: after "pushgateway"), so no channel name, however it is spelt, maps to a hashed group.
HASHED_PREFIX = "pushgateway-sha1."


class FrameEvent(TypedDict):
    """The channel-layer event that carries one frame to every hub subscribed to its group."""

    type: str  # EVENT_TYPE
    channel: str
    frame: str  # the wire protocol frame, with its position
    epoch: str  # the position, for the hub's own bookkeeping
    seq: int
    t: float  # when it was published (time.time()): the hub's delivery lag metric


#: The event's field names, in the order the publishers write them.
EVENT_FIELDS: tuple[str, ...] = tuple(FrameEvent.__annotations__)


def frame_event(channel: str, frame: str, position: Position, t: float | None = None) -> FrameEvent:
    return {
        "type": EVENT_TYPE,
        "channel": channel,
        "frame": frame,
        "epoch": position.epoch,
        "seq": position.seq,
        "t": time.time() if t is None else t,
    }


def group_name(channel: str) -> str:
    """The channel-layer group that carries `channel`; a name too long for a layer group
    (Channels' MAX_NAME_LENGTH) is replaced by its SHA-1, under a prefix of its own (a public
    channel named "sha1.<hex>" must not share a hashed private channel's group)."""
    name = GROUP_PREFIX + channel
    if len(name) < BaseChannelLayer.MAX_NAME_LENGTH:
        return name
    return HASHED_PREFIX + hashlib.sha1(channel.encode()).hexdigest()
