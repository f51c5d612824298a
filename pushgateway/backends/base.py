"""The backend contract: the methods a new backend implements."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from django.core.checks import CheckMessage, Error

from ..message import Message


class BaseBackend:
    """Base class for pushgateway backends.

    A backend takes messages (one hint on one channel each) and delivers them to
    subscribers. `send_messages` must never block on the network or raise because a
    push service is down: network backends queue and deliver in the background.
    """

    #: Option names this backend accepts in PUSHGATEWAY["OPTIONS"].
    options: Sequence[str] = ()

    def __init__(self, **options: Any) -> None:
        #: Delivery counters ("sent", "dropped", "failed", ...) for monitoring and tests.
        self.stats: Counter[str] = Counter()
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown options {unknown}")

    def send_messages(self, messages: Sequence[Message]) -> None:
        """Deliver (or queue for delivery) these messages."""
        raise NotImplementedError("subclasses of BaseBackend must provide send_messages()")

    async def asend_messages(self, messages: Sequence[Message]) -> None:
        """Async variant; the default calls send_messages, which must not block."""
        self.send_messages(messages)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued messages are delivered or given up; False on timeout."""
        return True

    def client_config(self) -> dict[str, Any]:
        """Settings the browser module needs for this backend (rendered as JSON)."""
        return {"transport": "websocket"}

    def close(self) -> None:
        """Release resources (threads, connections); called when settings change."""

    @classmethod
    def check(cls, options: dict[str, Any]) -> list[CheckMessage]:
        """System-check errors for these OPTIONS (unknown names by default)."""
        unknown = sorted(set(options) - set(cls.options))
        if not unknown:
            return []
        return [
            Error(
                f"Unknown PUSHGATEWAY OPTIONS {unknown} for {cls.__module__}.{cls.__name__}.",
                hint=f"Valid options: {sorted(cls.options) or 'none'}.",
                id="pushgateway.E004",
            )
        ]
