"""The application/websocket-events codec, and the GRIP events an origin answers with.

A GRIP proxy (Pushpin, Fastly Fanout) holds the browser's WebSocket and carries its events
over HTTP as one body of `TYPE [hex length]\\r\\n[content\\r\\n]` events. The origin answers
in the same format: text for the client prefixed `m:`, GRIP control messages `c:`.
"""

from __future__ import annotations

import json

CONTENT_TYPE = "application/websocket-events"

#: One event: its type (OPEN, TEXT, BINARY, PING, PONG, CLOSE, ...) and its content, if any.
Event = tuple[str, bytes | None]


def parse_events(body: bytes) -> list[Event]:
    """Split a websocket-events body into (type, content) pairs; raises ValueError (or
    UnicodeDecodeError) on a body that is not one."""
    events, pos = [], 0
    while pos < len(body):
        end = body.index(b"\r\n", pos)
        kind, _, size = body[pos:end].decode("ascii").partition(" ")
        pos = end + 2
        content = None
        if size:
            length = int(size, 16)
            content = body[pos : pos + length]
            if len(content) != length or body[pos + length : pos + length + 2] != b"\r\n":
                raise ValueError("truncated event")
            pos += length + 2
        events.append((kind, content))
    return events


def encode_events(events: list[Event]) -> bytes:
    """The websocket-events body of `events`."""
    out = bytearray()
    for kind, content in events:
        if content is None:
            out += kind.encode() + b"\r\n"
        else:
            out += f"{kind} {len(content):x}\r\n".encode() + content + b"\r\n"
    return bytes(out)


def message(frame: str) -> Event:
    """A text frame for the client."""
    return "TEXT", b"m:" + frame.encode()


def control(kind: str, channel: str) -> Event:
    """A GRIP control message to the proxy: `subscribe` or `unsubscribe` the connection."""
    return "TEXT", b"c:" + json.dumps({"type": kind, "channel": channel}).encode()
