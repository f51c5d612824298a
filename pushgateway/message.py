from __future__ import annotations

import itertools
import json
import os
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import protocol
from .exceptions import InvalidChannelName

# One encoder for every hint (json.dumps with options builds a new one per call).
_hint_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def hint_json(data: Any) -> str:
    """A hint's data as it goes on the wire: compact, UTF-8, keys sorted (equal hints are
    equal text), and nothing a browser cannot parse (NaN and Infinity are not JSON).
    Raises TypeError or ValueError for data JSON cannot carry."""
    return _hint_encoder.encode(data)


def validate_channel(channel: object) -> str:
    """Return `channel` if it is a valid channel name, else raise InvalidChannelName."""
    problem = protocol.channel_error(channel)
    if problem:
        raise InvalidChannelName(problem)
    return channel  # type: ignore[return-value]


# Message ids: a random prefix per process and a counter, unique without a system call each
# (uuid4 costs a read of the random device per hint). A forked child takes a prefix of its own.
_prefix = secrets.token_hex(8)
_counter = itertools.count()


def _new_prefix() -> None:
    global _prefix
    _prefix = secrets.token_hex(8)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_prefix)


def new_id() -> str:
    return f"{_prefix}{next(_counter):x}"


@dataclass(frozen=True)
class Message:
    """One hint on one channel, as a backend sends it.

    `resync` marks the stand-in a backend sends for hints it had to drop: it tells the
    channel's pages to refetch instead of carrying data.
    """

    channel: str
    data: Any = None
    id: str = field(default_factory=new_id)
    resync: bool = False
    client: str | None = None  # the tag of the page whose request published it (middleware.py)
    #: `data` as JSON (hint_json), when publish() has serialised it already (it checks size
    #: and form).
    data_json: str | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        """What makes two hints the same hint: channel and data."""
        return self.channel, self.data_json if self.data_json is not None else hint_json(self.data)

    @cached_property
    def head(self) -> str:
        """The frame without its position, serialised once (see protocol.with_position)."""
        if self.resync:
            return protocol.resync_head(self.channel)
        return protocol.message_head(
            self.channel, self.id, self.data, self.client, data_json=self.data_json
        )

    def frame(self, position: protocol.Position | None) -> str:
        """The wire protocol frame for this hint at `position`."""
        return protocol.with_position(self.head, position)
