"""A backend that does nothing."""

from .base import BaseBackend


class DummyBackend(BaseBackend):
    def send_messages(self, messages):
        pass
