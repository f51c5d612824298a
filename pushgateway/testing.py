"""Helpers for testing code that publishes hints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.test import override_settings

import pushgateway

from .message import Message


@contextmanager
def capture_hints() -> Iterator[list[Message]]:
    """Record hints instead of sending them; yields the list they are appended to.

        with capture_hints() as hints:
            Comment.objects.create(event=event, body="hi")
        assert [h.channel for h in hints] == [f"demo.comment.{...}", f"comments-{event.pk}"]

    Hints published inside a transaction appear when it commits, as in production (use
    TestCase.captureOnCommitCallbacks(execute=True) inside a TestCase).
    """
    with override_settings(PUSHGATEWAY={"BACKEND": "pushgateway.backends.locmem.LocMemBackend"}):
        del pushgateway.outbox[:]
        yield pushgateway.outbox
