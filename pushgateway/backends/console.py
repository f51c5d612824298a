"""A backend for development: writes each message frame to a stream (stdout)."""

import sys
import threading

from ..positions import MemoryPositions
from .base import BaseBackend


class ConsoleBackend(BaseBackend):
    options = ("stream",)

    def __init__(self, stream=None, **options):
        super().__init__(**options)
        self.stream = stream or sys.stdout
        self.positions = MemoryPositions()
        self._lock = threading.Lock()

    def send_messages(self, messages):
        with self._lock:
            positions = self.positions.advance([m.channel for m in messages])
            for message, position in zip(messages, positions, strict=True):
                self.stream.write(message.frame(position) + "\n")
            self.stream.flush()
