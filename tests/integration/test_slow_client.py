"""A client that stops reading is closed; it neither delays the others nor grows the server."""

import base64
import json
import os
import socket
import threading

import pytest

from pushgateway.constants import CloseCode
from tests.support.servers import Daphne, Uvicorn, run_python, subscribe

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


def client_frame(frame: dict) -> bytes:
    """A masked WebSocket text frame, as a client sends it."""
    payload = json.dumps(frame).encode()
    size = bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126])
    if len(payload) >= 126:
        size += len(payload).to_bytes(2, "big")
    mask = os.urandom(4)
    return bytes([0x81]) + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def stalled_client(port: int, channel: str, receive_buffer: int | None = None) -> socket.socket:
    """Open a WebSocket by hand, subscribe, and then never read again."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws/pushgateway/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://127.0.0.1:{port}\r\n\r\n".encode()
    )
    assert b" 101 " in sock.recv(4096).split(b"\r\n", 1)[0]
    sock.sendall(client_frame({"type": "subscribe", "channel": channel}))
    return sock


@pytest.mark.parametrize("server", [Daphne, Uvicorn], ids=["daphne", "uvicorn"])
def test_stalled_client_is_closed_and_others_get_everything(redis, start_daphne, server):
    """Under daphne the server's buffer shows the client is not reading; under uvicorn its
    `send` waits instead, and the frames queue in the consumer: either way the stalled
    client is cut off and the reader gets every hint, in order, without a stall."""
    daphne = start_daphne(redis.url, server=server)
    stalled = stalled_client(daphne.port, "busy")
    received, others = [], []
    with daphne.connect() as reader:
        subscribe(reader, "busy")

        def read_all():
            while len(received) < HINTS:
                frame = json.loads(reader.recv(timeout=30))
                if frame["type"] == "message":
                    received.append(frame["data"]["n"])
                else:  # a resync: the hub's check of its layer ran late on the busy loop
                    others.append(frame["type"])

        thread = threading.Thread(target=read_all)
        thread.start()
        result = run_python(PUBLISHER, redis.url)
        assert result.returncode == 0, result.stderr
        thread.join(60)

    assert received == list(range(HINTS))  # in order, none lost, nothing held back
    assert set(others) <= {"resync"}, others  # a refetch at worst, never an error
    assert "closing a socket that stopped reading (4013)" in daphne.process.log()
    # The server gave up on the stalled socket: draining it ends in a cut, not in all the data.
    # daphne drops the connection; uvicorn writes its close frame once the client reads again
    # (and would then wait 10 s, its close timeout, for a reply this client never sends).
    close = b"\x88\x02" + CloseCode.TRY_AGAIN_LATER.to_bytes(2, "big")
    stalled.settimeout(30)
    total, tail = 0, b""
    try:
        while tail != close and (chunk := stalled.recv(1 << 20)):
            total += len(chunk)
            tail = (tail + chunk)[-4:]
    except ConnectionResetError:
        tail = b"reset"
    assert total < HINTS * len(PAD)  # it was cut off long before the end
    assert tail == (close if server is Uvicorn else b"reset")
    stalled.close()


def test_a_client_that_asks_and_never_reads_the_answers_is_closed(start_daphne):
    """Replies (subscribed, pong, errors) count toward the cap like hints do: a client
    that keeps asking and never reads cannot make the server buffer its answers."""
    daphne = start_daphne()
    channel = "x" * 100  # each confirmation is about 170 bytes
    flooder = stalled_client(daphne.port, channel, receive_buffer=4096)
    ask = client_frame({"type": "subscribe", "channel": channel}) + client_frame({"type": "ping"})
    flooder.settimeout(10)
    sent = 0
    while "stopped reading (4013)" not in daphne.process.log():
        assert sent < 200_000, "not closed after 200,000 requests"
        try:
            flooder.sendall(ask * 1000)
        except OSError:  # closed under us
            break
        sent += 2000
    # The server gave up on it: draining ends in a close (or a reset, when the server drops
    # the connection with the flood still unread), within the timeout, not in more data.
    data = bytearray()
    try:
        while chunk := flooder.recv(1 << 20):
            data += chunk
    except ConnectionResetError:  # the reset may also discard the close frame
        pass
    flooder.close()
    close = data.rfind(bytes([0x88, 2]))  # a close frame (JSON text never holds 0x88)
    assert close < 0 or int.from_bytes(data[close + 2 : close + 4], "big") == 4013
    assert "closing a socket that stopped reading (4013)" in daphne.process.log()
