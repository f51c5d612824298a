"""A backend for tests: records messages in pushgateway.outbox."""

import pushgateway

from ..positions import MemoryPositions
from .base import BaseBackend


class LocMemBackend(BaseBackend):
    """Appends every message to the module-level list `pushgateway.outbox`; keeps
    positions in memory, so pages rendered in tests carry them."""

    def __init__(self, **options):
        super().__init__(**options)
        self.positions = MemoryPositions()

    def send_messages(self, messages):
        self.positions.advance([m.channel for m in messages])
        pushgateway.outbox.extend(messages)
