"""A backend for development: writes each message frame to a stream (stdout)."""

import sys
import threading

from .base import BaseBackend


class ConsoleBackend(BaseBackend):
    options = ("stream",)

    def __init__(self, stream=None, **options):
        super().__init__(**options)
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def send_messages(self, messages):
        with self._lock:
            for message in messages:
                self.stream.write(message.frame + "\n")
            self.stream.flush()
