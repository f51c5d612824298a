"""publish() and apublish(): one hint on one channel, deferred to commit inside a transaction."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction

from . import metrics
from .backends import get_backend
from .backends.base import Limits
from .exceptions import HintTooLarge
from .message import Message, validate_channel
from .middleware import current_client

logger = logging.getLogger("pushgateway")


def _key(channel: str, data: Any) -> tuple[str, str]:
    """The de-duplication key of a hint; checks that the hint can be sent at all."""
    try:
        # As it goes on the wire (compact, UTF-8), and nothing a browser cannot parse:
        # NaN and Infinity are not JSON, and a lone surrogate is not UTF-8.
        text = json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        size = len(text.encode())
    except (TypeError, ValueError) as exc:
        raise TypeError(f"hint data for {channel!r} must be JSON-serialisable: {exc}") from None
    limit = _max_data_bytes()
    if size > limit:
        raise HintTooLarge(
            f"hint data for {channel!r} is {size} bytes as JSON, over the limit of {limit} "
            "(PUSHGATEWAY OPTIONS MAX_DATA_BYTES): send identifiers and let pages fetch the rest"
        )
    return channel, text


def _max_data_bytes() -> int:
    try:
        return get_backend().limits.MAX_DATA_BYTES
    except Exception:  # a backend that cannot be built is logged when the hint is sent
        return Limits().MAX_DATA_BYTES


class _Pending:
    """An on_commit callback that sends one hint; equal hints share a key."""

    def __init__(self, channel: str, data: Any) -> None:
        self.channel = channel
        self.data = data
        self.key = _key(channel, data)
        self.client = current_client.get()  # the page whose request this is, if it said

    def __call__(self) -> None:
        _send(Message(self.channel, self.data, client=self.client))


def _send(message: Message) -> None:
    counted = metrics.get()
    if counted:
        counted.published.inc()
    try:
        get_backend().send_messages([message])
    except Exception:
        # Publishing never hurts the caller: a broken backend costs one refresh, not a 500.
        logger.exception("pushgateway: could not publish to %r", message.channel)


def _pending_hints(connection) -> dict:
    """Hints already waiting for this transaction's commit, by key.

    Django replaces `connection.run_on_commit` whenever callbacks are dropped (rollback of
    the transaction or of a savepoint) or run (commit), so an index built for one list
    object stays exact for as long as that list is the current one.
    """
    hooks = connection.run_on_commit
    cached = getattr(connection, "_pushgateway_pending", None)
    if cached is None or cached[0] is not hooks:
        index = {func.key: func for _, func, _ in hooks if isinstance(func, _Pending)}
        cached = connection._pushgateway_pending = (hooks, index)
    return cached[1]


def publish(channel: str, data: Any = None, *, using: str | None = None) -> None:
    """Publish one hint on `channel`.

    Inside ``transaction.atomic()`` the hint waits for the commit (and is dropped on
    rollback); identical hints in one transaction are sent once. Raises
    InvalidChannelName for a bad name, TypeError for data JSON cannot carry and
    HintTooLarge for data over the backend's MAX_DATA_BYTES; never raises because delivery
    fails.
    """
    validate_channel(channel)
    hint = _Pending(channel, data)
    connection = transaction.get_connection(using or DEFAULT_DB_ALIAS)
    if not connection.in_atomic_block:
        hint()
        return
    pending = _pending_hints(connection)
    if hint.key not in pending:
        pending[hint.key] = hint
        transaction.on_commit(hint, using=using, robust=True)


async def apublish(channel: str, data: Any = None) -> None:
    """Publish one hint from async code, at once (async code runs outside transactions).

    Raises as publish() does."""
    validate_channel(channel)
    _key(channel, data)
    message = Message(channel, data, client=current_client.get())
    counted = metrics.get()
    if counted:
        counted.published.inc()
    try:
        await get_backend().asend_messages([message])
    except Exception:
        logger.exception("pushgateway: could not publish to %r", channel)
