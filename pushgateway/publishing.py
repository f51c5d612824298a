"""publish() and apublish(): one hint on one channel, deferred to commit inside a transaction.

Inside a transaction each hint waits for the commit (Django's on_commit) and identical hints
are sent once: the keys of the hints already waiting are kept by adapters.on_commit_keys,
which knows how Django keeps its commit callbacks.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction

from . import metrics
from .adapters import on_commit_keys
from .backends import get_backend
from .backends.base import Limits
from .exceptions import HintTooLarge
from .message import Message, hint_json, validate_channel
from .middleware import current_client

logger = logging.getLogger("pushgateway")


def _serialise(channels: list[str], data: Any) -> str:
    """`data` as it goes on the wire (hint_json); checks that the hint can be sent at all."""
    try:
        text = hint_json(data)
        size = len(text.encode())
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"hint data for {_names(channels)} must be JSON-serialisable: {exc}"
        ) from None
    limit = _max_data_bytes()
    if size > limit:
        raise HintTooLarge(
            f"hint data for {_names(channels)} is {size} bytes as JSON, over the limit of "
            f"{limit} (PUSHGATEWAY OPTIONS MAX_DATA_BYTES): send identifiers and let pages "
            "fetch the rest"
        )
    return text


def _names(channels: list[str]) -> str:
    return ", ".join(map(repr, channels))


def _max_data_bytes() -> int:
    try:
        return get_backend().limits.MAX_DATA_BYTES
    except Exception:  # a backend that cannot be built is logged when the hint is sent
        return Limits().MAX_DATA_BYTES


def _validate(channels: list[str]) -> None:
    """Raise PrivateChannelUnsupported where the backend cannot keep a channel private."""
    try:
        backend = get_backend()
    except Exception:  # a backend that cannot be built is logged when the hint is sent
        return
    backend.validate_channels(channels)


class _Pending:
    """An on_commit callback that sends one hint on some channels; its `keys` say which
    (equal hints have equal keys)."""

    def __init__(self, channels: list[str], data: Any, data_json: str) -> None:
        self.channels = channels
        self.data = data
        self.data_json = data_json
        self.client = current_client.get()  # the page whose request this is, if it said

    @property
    def keys(self) -> list[tuple[str, str]]:
        return [(channel, self.data_json) for channel in self.channels]

    def __call__(self) -> None:
        messages = [
            Message(channel, self.data, client=self.client, data_json=self.data_json)
            for channel in self.channels
        ]
        counted = metrics.get()
        if counted:
            counted.published.inc(len(messages))
        try:
            get_backend().send_messages(messages)
        except Exception:
            # Publishing never hurts the caller: a broken backend costs one refresh, not a 500.
            logger.exception("pushgateway: could not publish to %s", _names(self.channels))


def _keys_of(callback: object) -> list[tuple[str, str]]:
    return callback.keys if isinstance(callback, _Pending) else []


def publish(channel: str, data: Any = None, *, using: str | None = None) -> None:
    """Publish one hint on `channel`.

    Inside ``transaction.atomic()`` the hint waits for the commit (and is dropped on
    rollback); identical hints in one transaction are sent once. Raises
    InvalidChannelName for a bad name, TypeError for data JSON cannot carry,
    HintTooLarge for data over the backend's MAX_DATA_BYTES and PrivateChannelUnsupported
    for a private channel on a backend that cannot keep it private; never raises because
    delivery fails.
    """
    validate_channel(channel)
    publish_on([channel], data, using=using)


def publish_on(channels: list[str], data: Any, *, using: str | None = None) -> None:
    """publish() of one hint on several valid channels (a save's): serialised once, and
    sent at commit by one callback, in one call to the backend."""
    _validate(channels)
    hint = _Pending(channels, data, _serialise(channels, data))
    connection = transaction.get_connection(using or DEFAULT_DB_ALIAS)
    if not connection.in_atomic_block:
        hint()
        return
    pending = on_commit_keys(connection, _keys_of)
    fresh = [key for key in hint.keys if key not in pending]
    if fresh:
        hint.channels = [channel for channel, _ in fresh]
        pending.update(fresh)
        connection.on_commit(hint, robust=True)


async def apublish(channel: str, data: Any = None) -> None:
    """Publish one hint from async code, at once (async code runs outside transactions).

    Raises as publish() does."""
    validate_channel(channel)
    _validate([channel])
    data_json = _serialise([channel], data)
    message = Message(channel, data, client=current_client.get(), data_json=data_json)
    counted = metrics.get()
    if counted:
        counted.published.inc()
    try:
        await get_backend().asend_messages([message])
    except Exception:
        logger.exception("pushgateway: could not publish to %r", channel)
