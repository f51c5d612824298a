"""A client that stops reading is closed; it neither delays the others nor grows the server."""

import base64
import json
import os
import socket
import threading

import pytest

from tests.servers import Daphne, Uvicorn, run_python, subscribe

pytestmark = pytest.mark.servers

# 40,000 hints of ~300 bytes (12 MB) at 5,000/s: far more than the stalled client's socket
# buffers hold, at a pace a client that reads keeps up with even on a busy machine.
HINTS = 40_000
PAD = "x" * 200
PUBLISHER = f"""
import time, pushgateway
start = time.monotonic()
for n in range({HINTS}):
    if n % 100 == 0:
        time.sleep(max(0, start + n / 5_000 - time.monotonic()))
    pushgateway.publish('busy', {{'n': n, 'pad': {PAD!r}}})
"""


def stalled_client(port: int, channel: str) -> socket.socket:
    """Open a WebSocket by hand, subscribe, and then never read again."""
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws/pushgateway/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://127.0.0.1:{port}\r\n\r\n".encode()
    )
    assert b" 101 " in sock.recv(4096).split(b"\r\n", 1)[0]
    payload = json.dumps({"type": "subscribe", "channel": channel}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


@pytest.mark.parametrize("server", [Daphne, Uvicorn], ids=["daphne", "uvicorn"])
def test_stalled_client_is_closed_and_others_get_everything(redis, start_daphne, server):
    """Under daphne the server's buffer shows the client is not reading; under uvicorn its
    `send` waits instead, and the frames queue in the consumer: either way the stalled
    client is cut off and the reader gets every hint, in order, without a stall."""
    daphne = start_daphne(redis.url, server=server)
    stalled = stalled_client(daphne.port, "busy")
    received = []
    with daphne.connect() as reader:
        subscribe(reader, "busy")

        def read_all():
            while len(received) < HINTS:
                received.append(json.loads(reader.recv(timeout=30))["data"]["n"])

        thread = threading.Thread(target=read_all)
        thread.start()
        result = run_python(PUBLISHER, redis.url)
        assert result.returncode == 0, result.stderr
        thread.join(60)

    assert received == list(range(HINTS))  # in order, none lost, nothing held back
    assert "closing a socket that stopped reading (4013)" in daphne.process.log()
    # The server gave up on the stalled socket: draining it ends in a close, not more data.
    stalled.settimeout(10)
    total = 0
    try:
        while chunk := stalled.recv(1 << 20):
            total += len(chunk)
    except ConnectionResetError:
        pass
    assert total < HINTS * len(PAD)  # it was cut off long before the end
    stalled.close()
