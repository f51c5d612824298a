"""A publisher host: saves comments all the time and counts the saves that fail.

`python -m tests.support.host_publisher` (Django settings from the environment) creates the
events of EVENTS, answers with their ids, and then saves a comment on the "steady" event every
INTERVAL seconds, as a busy site would. Commands on stdin, one a line, answered with one JSON
line on stdout each:
  save NAME  save one comment on the event NAME: {"pk": PK, "at": TIME}
  stats      {"saves": N, "failed": N, "max_seconds": LONGEST SAVE, "errors": [...]}
  lost       {"lost": channels whose hints the backend gave up and has not healed yet}
End of input ends it. `Publisher` runs it for a test.
"""

from __future__ import annotations

import json
import os
import queue
import select
import sys
import threading
import time
from pathlib import Path

INTERVAL = 0.1
EVENTS = ("steady", "probe", "job")


class Publisher:
    """The program run on `host`, seen from the test."""

    def __init__(self, host, log_dir: Path, env: dict) -> None:
        from tests.support.servers import PYTHON

        args = [PYTHON, "-m", "tests.support.host_publisher"]
        self.process = host.start("publisher", args, log_dir, env, pipes=True)
        self._answers: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        #: The id of each event it saves comments on; their hints go to comments-ID.
        self.events: dict[str, int] = self._answer(timeout=60)
        self.steady, self.probe, self.job = (f"comments-{pk}" for pk in self.events.values())

    def _read(self) -> None:
        for line in self.process.proc.stdout:
            self._answers.put(json.loads(line))

    def _answer(self, timeout: float) -> dict:
        try:
            return self._answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the publisher did not answer:\n{self.process.log()}") from None

    def ask(self, command: str) -> dict:
        self.process.proc.stdin.write(command + "\n")
        self.process.proc.stdin.flush()
        return self._answer(timeout=20)

    def save(self, event: str) -> dict:
        """Save a comment on `event` now: {"pk": PK, "at": TIME}."""
        saved = self.ask(f"save {event}")
        assert saved["pk"] is not None, f"the save failed:\n{self.ask('stats')}"
        return saved

    def stop(self) -> None:
        self.process.stop()


class Saver:
    def __init__(self) -> None:
        from demo.models import Event

        self.events = {name: Event.objects.create(title=name) for name in EVENTS}
        self.stats = {"saves": 0, "failed": 0, "max_seconds": 0.0, "errors": []}

    def save(self, name: str) -> int | None:
        from demo.models import Comment

        started = time.monotonic()
        try:
            return Comment.objects.create(event=self.events[name], author="pub", body="hi").pk
        except Exception as exc:
            self.stats["failed"] += 1
            self.stats["errors"] = [*self.stats["errors"][-9:], repr(exc)]
            return None
        finally:
            self.stats["saves"] += 1
            took = time.monotonic() - started
            self.stats["max_seconds"] = max(self.stats["max_seconds"], took)

    def answer(self, command: str) -> dict:
        from pushgateway.backends import get_backend

        verb, _, name = command.partition(" ")
        if verb == "save":
            return {"pk": self.save(name), "at": time.time()}
        if verb == "stats":
            return self.stats
        if verb == "lost":
            return {"lost": get_backend().sender.lost}
        return {"error": f"unknown command {command!r}"}


def main() -> None:
    import django

    django.setup()
    saver = Saver()
    say({name: event.pk for name, event in saver.events.items()})
    pending = b""
    next_save = time.monotonic()
    while True:
        ready, _, _ = select.select([0], [], [], max(0.0, next_save - time.monotonic()))
        if ready:
            data = os.read(0, 4096)
            if not data:
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                say(saver.answer(line.decode().strip()))
        if time.monotonic() >= next_save:
            saver.save("steady")
            next_save = max(next_save + INTERVAL, time.monotonic() - INTERVAL)


def say(answer: dict) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
