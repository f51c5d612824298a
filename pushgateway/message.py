from __future__ import annotations

import uuid
from dataclasses import dataclass, field
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
    """One hint on one channel, as a backend sends it."""

    channel: str
    data: Any = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def frame(self) -> str:
        """The wire protocol's `message` frame for this hint, serialised once."""
        return protocol.message_frame(self.channel, self.id, self.data)
