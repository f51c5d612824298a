from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import protocol
from .exceptions import InvalidChannelName


def validate_channel(channel: object) -> str:
    """Return `channel` if it is a valid channel name, else raise InvalidChannelName."""
    problem = protocol.channel_error(channel)
    if problem:
        raise InvalidChannelName(problem)
    return channel  # type: ignore[return-value]


@dataclass(frozen=True)
class Message:
    """One hint on one channel, as a backend sends it.

    `resync` marks the stand-in a backend sends for hints it had to drop: it tells the
    channel's pages to refetch instead of carrying data.
    """

    channel: str
    data: Any = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    resync: bool = False
    client: str | None = None  # the page whose request published it (see middleware.py)

    @cached_property
    def head(self) -> str:
        """The frame without its position, serialised once (see protocol.with_position)."""
        if self.resync:
            return protocol.resync_head(self.channel)
        return protocol.message_head(self.channel, self.id, self.data, self.client)

    def frame(self, position: protocol.Position | None) -> str:
        """The wire protocol frame for this hint at `position`."""
        return protocol.with_position(self.head, position)
