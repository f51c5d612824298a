"""A publisher that is already running when the test times a publish.

`python -m tests.support.publisher` (Django settings from the environment) reads lines
`CHANNEL DATA_JSON` on stdin, publishes each with pushgateway.publish() and answers one JSON
line, `{"at": TIME}`: time.time() just before the publish call. `Publisher` runs it for a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time


class Publisher:
    """The program, seen from the test (a context manager)."""

    def __init__(self, redis_url: str | None, **env: str) -> None:
        from tests.support.servers import PYTHON, ROOT, project_env

        self.proc = subprocess.Popen(
            [PYTHON, "-m", "tests.support.publisher"],
            cwd=ROOT,
            env=project_env(REDIS_URL=redis_url, **env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def publish(self, channel: str, data) -> float:
        """Publish `data` on `channel`; returns when the publish call started (time.time())."""
        self.proc.stdin.write(f"{channel} {json.dumps(data)}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["at"]

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def main() -> None:
    import django

    django.setup()
    import pushgateway

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        channel, _, data = line.strip().partition(" ")
        at = time.time()
        pushgateway.publish(channel, json.loads(data))
        print(json.dumps({"at": at}), flush=True)


if __name__ == "__main__":
    main()
