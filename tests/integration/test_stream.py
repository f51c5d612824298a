"""Integration: the streaming HTTP transport on real daphne, uvicorn and Pushpin."""

import http.client
import json
import signal
import socket
import threading
from urllib.parse import urlsplit

import pytest

from pushgateway.constants import (
    MAX_STREAM_BODY_BYTES,
    STREAM_PATH,
    STREAM_RECHECK_HEADER,
    CloseCode,
)
from tests.support.servers import Daphne, Uvicorn, options_env, run_python
from tests.support.streams import Stream, subscribe_frame

pytestmark = pytest.mark.servers


def publish(redis_url, channel, data, env=None):
    code = f"import pushgateway; pushgateway.publish({channel!r}, {data!r})"
    result = run_python(code, redis_url, env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("server", [Daphne, Uvicorn], ids=["daphne", "uvicorn"])
def test_a_stream_gets_subscribed_then_the_hints_published_on_its_channel(
    redis, start_daphne, server
):
    origin = start_daphne(redis.url, server=server)
    frames = [subscribe_frame("stream-a"), subscribe_frame("bad name!")]
    with Stream(origin.url, frames) as stream:
        assert stream.response.status == 200
        headers = stream.response.headers
        assert headers["Content-Type"].startswith("text/event-stream")
        assert headers["Cache-Control"] == "no-cache" and headers["X-Accel-Buffering"] == "no"
        subscribed = stream.frame()
        assert subscribed["type"] == "subscribed" and subscribed["channel"] == "stream-a"
        assert stream.frame()["code"] == "invalid_channel"  # answered, as on a socket
        publish(redis.url, "stream-a", {"pk": "42"})
        message = stream.frame()
    assert message["type"] == "message" and message["data"] == {"pk": "42"}
    assert message["position"]["seq"] == (subscribed["position"] or {"seq": 0})["seq"] + 1


def request(base_url, method, body=b"", headers=None):
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Origin": base_url, "Content-Type": "application/json", **(headers or {})}
    connection.request(method, STREAM_PATH, body=body, headers=headers)
    response = connection.getresponse()
    answer = response.status, response.read().decode()
    connection.close()
    return answer


MALFORMED = [
    (b"not json", "JSON"),
    (b"[1, 2]", "frames"),
    (b'{"frames": {"type": "subscribe"}}', "frames"),
    (b'{"frames": [' + b"{}," * 300 + b"{}]}", "at most 200 frames"),
    (b"[" * 5000, "JSON"),
    (b"\xff\xfe\x00", "JSON"),
    (b'{"frames": ["' + b"x" * MAX_STREAM_BODY_BYTES + b'"]}', "at most"),
]


def test_a_malformed_stream_request_gets_a_clear_400_never_a_500(start_daphne):
    origin = start_daphne()
    for body, reason in MALFORMED:
        status, text = request(origin.url, "POST", body)
        assert status == 400 and reason in text, (body[:40], status, text)
    assert request(origin.url, "GET")[0] == 405
    status, _ = request(origin.url, "POST", b'{"frames": []}', {"Origin": "http://evil.example"})
    assert status == 403
    # Bad frames inside a good body are answered on the stream, as a socket answers them.
    with Stream(origin.url, [{"type": "nonsense"}, subscribe_frame("private-x")]) as stream:
        assert stream.frame()["code"] == "unknown_type"
        assert stream.frame()["code"] == "forbidden"


def test_a_stream_through_pushpin_is_held_and_gets_the_published_hints(pushpin_origin, redis):
    env = {"PUSHGATEWAY_BACKEND": "fanout", "GRIP_URL": pushpin_origin.grip_url}
    frames = [subscribe_frame(c) for c in ("held-a", "held-b", "private-held")]
    with Stream(pushpin_origin.url, frames) as stream:
        assert stream.response.status == 200
        assert stream.response.headers[STREAM_RECHECK_HEADER] == "1"
        assert "Grip-Hold" not in stream.response.headers  # the proxy took it
        for channel in ("held-a", "held-b"):
            subscribed = stream.frame()
            assert subscribed["type"] == "subscribed" and subscribed["channel"] == channel
        assert stream.frame()["code"] == "forbidden"  # no token: not handed to the proxy
        publish(redis.url, "private-held", {"secret": 1}, env)
        publish(redis.url, "held-b", {"pk": "8"}, env)
        publish(redis.url, "held-a", {"pk": "7"}, env)
        messages = [stream.frame(), stream.frame()]
    # One Grip-Channel entry per channel: both held, the private one not.
    assert [(m["channel"], m["data"]) for m in messages] == [
        ("held-b", {"pk": "8"}),
        ("held-a", {"pk": "7"}),
    ]


def test_the_grip_stream_view_refuses_requests_not_signed_by_the_proxy(pushpin_origin):
    status, text = request(pushpin_origin.origin.url, "POST", json.dumps({"frames": []}))
    assert status == 403 and "Grip-Sig" in text


def stalled_stream(port: int, channel: str) -> socket.socket:
    """Open a stream by hand with a small receive buffer, and then never read again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    body = json.dumps({"frames": [subscribe_frame(channel)]}).encode()
    sock.sendall(
        f"POST {STREAM_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Origin: http://127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    assert b" 200 " in sock.recv(1024).split(b"\r\n", 1)[0]
    return sock


def test_a_stream_that_stops_reading_is_closed_and_a_reading_one_gets_everything(
    redis, start_daphne
):
    daphne = start_daphne(redis.url)
    stalled = stalled_stream(daphne.port, "busy-stream")
    hints = 6000  # 1.8 MB: far past MAX_PENDING_BYTES and the stalled client's buffers
    code = (
        "import pushgateway\n"
        f"for n in range({hints}): pushgateway.publish('busy-stream', {{'n': n, 'pad': 'x' * 250}})"
    )
    with Stream(daphne.url, [subscribe_frame("busy-stream")], timeout=30) as reader:
        assert reader.frame()["type"] == "subscribed"
        publisher = threading.Thread(target=lambda: run_python(code, redis.url))
        publisher.start()
        received = []
        while len(received) < hints:
            frame = reader.frame()
            if frame["type"] == "message":
                received.append(frame["data"]["n"])
        publisher.join(60)
    stalled.close()
    assert received == list(range(hints))  # in order, none lost, not held up
    assert "closing a socket that stopped reading (4013)" in daphne.process.log()


@pytest.mark.parametrize("server", [Daphne, Uvicorn], ids=["daphne", "uvicorn"])
def test_a_draining_server_ends_its_streams_with_the_service_restart_code(start_daphne, server):
    origin = start_daphne(server=server, **options_env({"DRAIN_SECONDS": 0.5}))
    with Stream(origin.url, [subscribe_frame("drained")]) as stream:
        assert stream.frame()["type"] == "subscribed"
        origin.process.proc.send_signal(signal.SIGTERM)
        assert stream.frame() == {"type": "close", "code": CloseCode.SERVICE_RESTART}
    origin.process.proc.wait(10)
