"""A client of the streaming HTTP transport: POST the frames, read Server-Sent Events."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

from pushgateway.constants import STREAM_PATH


class Stream:
    """One open stream (`with Stream(base_url, frames) as s: s.frame()`)."""

    def __init__(self, base_url: str, frames: list[dict], timeout: float = 10, **headers):
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        body = json.dumps({"frames": frames})
        sent = {"Content-Type": "application/json", "Origin": base_url, **headers}
        self.connection.request("POST", STREAM_PATH, body=body, headers=sent)
        self.response = self.connection.getresponse()
        self.comments = 0

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def event(self) -> tuple[str, str]:
        """The next event as (name, data); comments are counted and skipped."""
        name, data = "message", []
        while True:
            line = self.response.readline().decode()
            if not line:
                raise EOFError("the stream ended")
            line = line.rstrip("\n")
            if line == "":
                if data:
                    return name, "\n".join(data)
                continue
            if line.startswith(":"):
                self.comments += 1
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))

    def frame(self) -> dict:
        """The next protocol frame (a `close` event is returned as {"type": "close", ...})."""
        name, data = self.event()
        frame = json.loads(data)
        return {"type": "close", **frame} if name == "close" else frame


def subscribe_frame(channel: str, **fields) -> dict:
    return {"type": "subscribe", "channel": channel, **fields}
