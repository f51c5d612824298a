"""A backend for tests: records messages in pushgateway.outbox."""

import pushgateway

from .base import BaseBackend


class LocMemBackend(BaseBackend):
    """Appends every message to the module-level list `pushgateway.outbox`."""

    def send_messages(self, messages):
        pushgateway.outbox.extend(messages)
