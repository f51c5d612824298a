"""The stream consumer and the hub in-process (Channels' communicator, in-memory layer)."""

import asyncio
import json

from channels.testing import ApplicationCommunicator

import pushgateway
from channels_app import stream as stream_module
from channels_app.asgi import application
from channels_app.hub import get_hub
from pushgateway.constants import STREAM_PATH

ORIGIN = (b"origin", b"http://127.0.0.1")


async def open_stream(frames, method="POST"):
    """A stream on the ASGI application; returns it once its headers are sent, and them."""
    scope = {
        "type": "http",
        "method": method,
        "path": STREAM_PATH,
        "raw_path": STREAM_PATH.encode(),
        "query_string": b"",
        "headers": [ORIGIN, (b"content-type", b"application/json")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 50000),
    }
    stream = ApplicationCommunicator(application, scope)
    body = json.dumps({"frames": frames}).encode()
    await stream.send_input({"type": "http.request", "body": body})
    start = await stream.receive_output(2)
    return stream, start


async def next_event(stream):
    """The next event's body text, keep-alive comments included."""
    message = await stream.receive_output(2)
    assert message["type"] == "http.response.body"
    return message["body"].decode()


async def next_frame(stream):
    while True:
        text = await next_event(stream)
        if text.startswith("data: "):
            return json.loads(text[6:])


def subscribe(channel, **fields):
    return {"type": "subscribe", "channel": channel, **fields}


async def test_a_stream_is_a_connection_of_the_hub_until_the_client_goes_away():
    stream, start = await open_stream([subscribe("unit-stream")])
    assert start["status"] == 200
    assert dict(start["headers"])[b"x-accel-buffering"] == b"no"
    assert (await next_frame(stream))["type"] == "subscribed"
    await pushgateway.apublish("unit-stream", {"pk": "1"})
    message = await next_frame(stream)
    assert message["type"] == "message" and message["data"] == {"pk": "1"}
    assert len(get_hub().sockets["unit-stream"]) == 1
    await stream.send_input({"type": "http.disconnect"})
    await stream.wait(2)
    assert "unit-stream" not in get_hub().sockets  # left with the connection


async def test_a_burst_goes_down_a_stream_as_one_chunk_of_its_events_in_order():
    stream, _ = await open_stream([subscribe("unit-burst")])
    assert (await next_frame(stream))["type"] == "subscribed"
    for n in range(3):  # in one turn of the event loop, as a backlog read off Redis
        get_hub().deliver("unit-burst", json.dumps({"n": n}))
    chunk = await next_event(stream)
    events = [json.loads(line[6:]) for line in chunk.splitlines() if line.startswith("data: ")]
    assert events == [{"n": 0}, {"n": 1}, {"n": 2}]
    await stream.send_input({"type": "http.disconnect"})
    await stream.wait(2)


async def test_a_stream_request_whose_body_never_ends_is_refused_and_others_go_on(monkeypatch):
    monkeypatch.setattr(stream_module, "BODY_SECONDS", 0.2)
    scope = {"type": "http", "method": "POST", "path": STREAM_PATH, "headers": [ORIGIN]}
    trickle = ApplicationCommunicator(application, {**scope, "query_string": b""})
    await trickle.send_input({"type": "http.request", "body": b'{"frames": [', "more_body": True})
    start = await trickle.receive_output(2)  # and nothing more is ever sent
    assert start["status"] == 408
    assert "too long" in (await trickle.receive_output(2))["body"].decode()
    stream, start = await open_stream([subscribe("unit-after-trickle")])
    assert start["status"] == 200
    assert (await next_frame(stream))["type"] == "subscribed"
    await stream.send_input({"type": "http.disconnect"})
    await stream.wait(2)


async def test_a_quiet_stream_sends_keep_alive_comments(monkeypatch):
    monkeypatch.setattr(stream_module, "STREAM_KEEPALIVE_SECONDS", 0.05)
    stream, _ = await open_stream([subscribe("unit-quiet")])
    assert (await next_frame(stream))["type"] == "subscribed"
    await asyncio.sleep(0.2)
    assert await next_event(stream) == ":\n\n"
    await stream.send_input({"type": "http.disconnect"})
    await stream.wait(2)


async def test_a_stream_request_that_is_not_one_is_refused_with_its_reason():
    stream, start = await open_stream([], method="GET")
    assert start["status"] == 405 and (b"allow", b"POST") in start["headers"]
    stream, start = await open_stream({"not": "a list"})
    assert start["status"] == 400
    assert "expected" in (await stream.receive_output(2))["body"].decode()


async def test_the_hub_ends_a_streamed_subscription_whose_token_no_longer_verifies(settings):
    from pushgateway.tokens import make_token

    token = make_token("private-unit")
    stream, _ = await open_stream([subscribe("private-unit", token=token)])
    assert (await next_frame(stream))["type"] == "subscribed"
    settings.SECRET_KEY = "another key: the token's no longer verifies"
    assert await get_hub().recheck_tokens() == 1
    frame = await next_frame(stream)
    assert frame["code"] == "forbidden" and frame["channel"] == "private-unit"
    await stream.send_input({"type": "http.disconnect"})
    await stream.wait(2)
