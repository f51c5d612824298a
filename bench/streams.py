"""Fan-out over streams against WebSockets: the same daphne, the same hub, the same hints.

Each scenario runs twice on a freshly started daphne (channels_app.asgi, Redis pub/sub
layer): once with WebSocket clients (bench/fanout.py's), once with stream clients (a POST to
/pushgateway/stream/ read as Server-Sent Events over chunked HTTP/1.1), spread over several
processes. A publisher process sends hints carrying a timestamp through pushgateway.publish().
Latency is publish timestamp to receipt by the client; a delivery counts as lost when it has
not arrived GRACE seconds after the last publish. Memory is the server's RSS growth per
subscribed connection.

    .venv/bin/python -m bench.streams                  # every scenario
    .venv/bin/python -m bench.streams --only 200x50    # one; --seconds changes the length
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import (  # noqa: E402
    Scenario,
    run_clients,
    run_scenarios,
    run_target,
    scenario_parser,
    summarize,
)
from pushgateway.constants import STREAM_PATH  # noqa: E402

SCENARIOS = [
    Scenario("200x50", "200 connections x 50 msg/s, one channel", 200, rate=50),
    Scenario("1000x20", "1000 connections x 20 msg/s, one channel", 1000, rate=20),
    Scenario("1000ch", "1000 connections on 1000 channels, 2000 hints/s", 1000, 1000, rate=2000),
    Scenario(
        "memory", "server memory per idle subscribed connection, 2000", 2000, memory_only=True
    ),
]
CLIENTS = {"WebSocket": "bench.fanout", "stream (SSE)": "bench.streams"}


# ---------------------------------------------------------------- stream client process


class StreamClient(asyncio.Protocol):
    """One stream: the POST, then chunked Server-Sent Events, each `message` timed."""

    def __init__(self, on_event) -> None:
        self.on_event = on_event
        self.raw = b""  # bytes not yet taken out of the chunked encoding
        self.text = b""  # the decoded body not yet split into events
        self.head = True

    def data_received(self, data: bytes) -> None:
        self.raw += data
        if self.head:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self.raw, self.head = self.raw[end + 4 :], False
        while True:  # chunks: SIZE\r\nDATA\r\n
            line = self.raw.find(b"\r\n")
            if line < 0:
                break
            size = int(self.raw[:line], 16)
            if len(self.raw) < line + 2 + size + 2:
                break
            self.text += self.raw[line + 2 : line + 2 + size]
            self.raw = self.raw[line + 2 + size + 2 :]
        *events, self.text = self.text.split(b"\n\n")
        for event in events:
            if event.startswith(b"data: "):
                self.on_event(event[6:])


async def open_stream(port: int, channel: str, on_event) -> asyncio.Transport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(lambda: StreamClient(on_event), "127.0.0.1", port)
    body = json.dumps({"frames": [{"type": "subscribe", "channel": channel}]}).encode()
    transport.write(
        f"POST {STREAM_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Origin: http://127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return transport


# ---------------------------------------------------------------- orchestration


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "clients":
        port, first, count, channels = map(int, sys.argv[2:])
        asyncio.run(run_clients(port, first, count, channels, open_stream))
        return
    options = scenario_parser(__doc__, SCENARIOS).parse_args()

    def rows(scenario: Scenario, env: dict, log_dir: Path) -> dict[str, dict]:
        return {
            name: summarize(
                run_target(scenario, "hub on daphne", env, options.seconds, log_dir, clients=module)
            )
            for name, module in CLIENTS.items()
        }

    run_scenarios("bench.streams", SCENARIOS, options, rows)


if __name__ == "__main__":
    main()
