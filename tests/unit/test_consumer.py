"""The consumer and hub in-process (Channels' test communicator, in-memory layer)."""

import asyncio
import json
import logging

import pytest
from autobahn.exception import Disconnected
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

import pushgateway
from channels_app import consumer as consumer_module
from channels_app import hub as hub_module
from channels_app.asgi import application
from channels_app.consumer import PushGatewayConsumer
from channels_app.hub import get_hub
from channels_app.routing import pushgateway_socket
from pushgateway import constants
from pushgateway.backends import get_backend
from pushgateway.constants import WEBSOCKET_PATH, ErrorCode
from pushgateway.layer import group_name
from tests.support.sockets import ORIGIN, connect, receive, send, subscribe


async def test_subscribed_socket_receives_published_hint():
    socket = await connect()
    subscribed = await subscribe(socket, "comments-7")
    assert subscribed["stale"] is True  # the page said nothing of what it knows
    await pushgateway.apublish("comments-7", {"model": "demo.comment", "pk": "1"})
    frame = await receive(socket)
    assert frame["type"] == "message" and frame["channel"] == "comments-7"
    assert frame["data"] == {"model": "demo.comment", "pk": "1"}
    # One publish further than the subscription said.
    before = subscribed["position"]
    assert frame["position"]["seq"] == (before["seq"] + 1 if before["epoch"] else 1)
    await socket.disconnect()


async def test_a_page_that_knows_the_position_is_not_stale_and_one_behind_is():
    await pushgateway.apublish("gap-1", "before render")
    rendered = get_backend().read_positions(["gap-1"])["gap-1"]
    socket = await connect()
    fresh = await subscribe(socket, "gap-1", since=rendered.as_json())
    assert fresh == {
        "type": "subscribed",
        "channel": "gap-1",
        "position": rendered.as_json(),
        "stale": False,
    }
    await socket.disconnect()

    # Published after the page was rendered, before it subscribed: nobody received it.
    await pushgateway.apublish("gap-1", "between render and subscribe")
    socket = await connect()
    behind = await subscribe(socket, "gap-1", since=rendered.as_json())
    assert behind["stale"] is True
    assert behind["position"] == {"epoch": rendered.epoch, "seq": rendered.seq + 1}
    await socket.disconnect()


async def test_hints_lost_on_the_way_reach_the_page_as_a_resync(monkeypatch):
    monkeypatch.setattr(hub_module, "RECHECK_SECONDS", 0)
    socket = await connect()
    await subscribe(socket, "lossy")
    # The store moves on but the hint never reaches the hub (the layer dropped it).
    [position] = get_backend().positions.advance(["lossy"])
    assert await get_hub().verify(["lossy"]) == 1
    assert await receive(socket) == {
        "type": "resync",
        "channel": "lossy",
        "position": position.as_json(),
    }
    assert await get_hub().verify(["lossy"]) == 0  # told once
    await socket.disconnect()


async def test_a_cancelled_consumer_leaves_nothing_in_the_hub():
    socket = await connect()
    for channel in ("c1", "c2", "c3"):
        await subscribe(socket, channel)
    socket.future.cancel()  # the server gives up on the connection mid-way
    await asyncio.sleep(0.05)
    assert all(channel not in get_hub().sockets for channel in ("c1", "c2", "c3"))


async def test_a_page_that_closes_while_frames_are_on_their_way_is_not_an_error(caplog):
    # Between a client's close frame and the end of the connection, daphne's send raises
    # autobahn's Disconnected. Found by tests/system/test_churn.py: each crashed the consumer
    # ("Exception inside application") or was logged by the hub as an error.
    closed = False

    async def daphne_like(scope, receive, send):
        async def server_send(message):
            if closed and message["type"] == "websocket.send":
                raise Disconnected("Attempt to send on a closed protocol")
            await send(message)

        return await application(scope, receive, server_send)

    socket = WebsocketCommunicator(daphne_like, "/ws/pushgateway/", headers=ORIGIN)
    assert (await socket.connect())[0]
    await subscribe(socket, "closing-1")
    closed = True  # the page's close frame arrived
    await pushgateway.apublish("closing-1", 1)  # a hint on its way to the page
    await socket.send_to(text_data=json.dumps({"type": "subscribe", "channel": "closing-2"}))
    await asyncio.sleep(0.1)
    assert not socket.future.done()  # the consumer is waiting for the disconnect
    await socket.disconnect()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "closing-1" not in get_hub().sockets and "closing-2" not in get_hub().sockets


async def test_hub_joins_each_channel_once_per_process_and_leaves_with_the_last_socket():
    layer = get_channel_layer()
    group = group_name("shared")
    sockets = [await connect() for _ in range(3)]
    for socket in sockets:
        await subscribe(socket, "shared")
    assert len(layer.groups[group]) == 1  # one membership for three sockets

    await pushgateway.apublish("shared", {"n": 1})
    received = [json.loads(await s.receive_from(timeout=2)) for s in sockets]
    assert {r["id"] for r in received} == {received[0]["id"]}

    await send(sockets[0], {"type": "unsubscribe", "channel": "shared"})
    await sockets[1].disconnect()
    assert len(layer.groups[group]) == 1
    await pushgateway.apublish("shared", {"n": 2})
    assert json.loads(await sockets[2].receive_from(timeout=2))["data"] == {"n": 2}
    assert await sockets[0].receive_nothing(timeout=0.2)

    await sockets[2].disconnect()
    await asyncio.sleep(0.05)
    assert group not in layer.groups
    assert get_hub().sockets == {}
    await sockets[0].disconnect()


async def test_other_channels_are_not_delivered():
    socket = await connect()
    await subscribe(socket, "mine")
    await pushgateway.apublish("theirs", 1)
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{", ErrorCode.INVALID_JSON),
        ('"subscribe"', ErrorCode.INVALID_FRAME),
        ({"type": "publish", "channel": "x"}, ErrorCode.UNKNOWN_TYPE),
        ({"type": "subscribe", "channel": "../etc"}, ErrorCode.INVALID_CHANNEL),
        ({"type": "subscribe", "channel": "a", "pad": "x" * 8000}, ErrorCode.FRAME_TOO_LARGE),
        ({"type": "subscribe", "channel": "private-x"}, ErrorCode.FORBIDDEN),
        ("[" * 4000, ErrorCode.INVALID_JSON),
        ({"type": "subscribe", "channel": "private-x", "token": "\ud800"}, ErrorCode.FORBIDDEN),
        ({"type": "subscribe", "channel": "a", "since": {"seq": "1"}}, ErrorCode.INVALID_POSITION),
    ],
)
async def test_bad_frames_get_errors_and_the_socket_keeps_working(frame, code):
    socket = await connect()
    error = await send(socket, frame)
    assert error["type"] == "error" and error["code"] == code
    await subscribe(socket, "ok")
    await pushgateway.apublish("ok", 1)
    assert json.loads(await socket.receive_from(timeout=2))["type"] == "message"
    await socket.disconnect()


async def test_binary_frame_is_an_error():
    socket = await connect()
    await socket.send_to(bytes_data=b"\x01")
    assert json.loads(await socket.receive_from(timeout=2))["code"] == ErrorCode.BINARY_FRAME
    await socket.disconnect()


async def test_persistent_misbehaviour_closes_with_4008():
    socket = await connect()
    for _ in range(constants.MAX_ERRORS + 1):
        await socket.send_to(text_data="garbage")
        await socket.receive_from(timeout=2)
    close = await socket.receive_output(timeout=2)
    assert close == {"type": "websocket.close", "code": 4008}
    assert type(close["code"]) is int  # daphne's autobahn closes 1011 on an int subclass


async def test_private_channel_with_signed_token():
    socket = await connect()
    token = pushgateway.make_token("private-user-1")
    await subscribe(socket, "private-user-1", token=token)
    wrong = {"type": "subscribe", "channel": "private-user-2", "token": token}
    assert (await send(socket, wrong))["code"] == ErrorCode.FORBIDDEN
    await socket.disconnect()


async def test_foreign_origin_is_refused():
    socket = WebsocketCommunicator(
        application, "/ws/pushgateway/", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await socket.connect()
    assert not connected


async def test_layer_failure_on_subscribe_is_reported_and_socket_survives(monkeypatch):
    layer = get_channel_layer()
    real_group_add = layer.group_add

    async def failing_group_add(group, channel):
        raise ConnectionError("redis down")

    socket = await connect()
    monkeypatch.setattr(layer, "group_add", failing_group_add)
    error = await send(socket, {"type": "subscribe", "channel": "x"})
    assert error == {
        "type": "error",
        "code": "unavailable",
        "message": "subscribe failed; try again later",
        "channel": "x",
    }
    monkeypatch.setattr(layer, "group_add", real_group_add)
    await subscribe(socket, "x")
    await socket.disconnect()


async def test_other_websocket_paths_are_refused():
    socket = WebsocketCommunicator(application, "/ws/other/", headers=ORIGIN)
    connected, _ = await socket.connect()
    assert not connected


async def test_routing_composes_with_channels_routers():
    """What docs/deployment.md tells users to put in their own asgi.py."""
    from channels.routing import ProtocolTypeRouter, URLRouter

    from channels_app.routing import websocket_urlpatterns

    app = ProtocolTypeRouter({"websocket": URLRouter(websocket_urlpatterns)})
    socket = WebsocketCommunicator(app, "/ws/pushgateway/", headers=ORIGIN)
    assert (await socket.connect())[0]
    await subscribe(socket, "c")
    await pushgateway.apublish("c", 1)
    assert json.loads(await socket.receive_from(timeout=2))["data"] == 1
    await socket.disconnect()


async def test_hub_membership_ends_right_when_joins_and_leaves_race():
    from channels.layers import InMemoryChannelLayer

    from channels_app.hub import Hub

    class SlowLayer(InMemoryChannelLayer):
        async def group_add(self, group, channel):
            await asyncio.sleep(0.02)  # a join still in flight while others come and go
            await super().group_add(group, channel)

    hub = Hub(SlowLayer())
    a, b = object(), object()
    group = group_name("race")
    # a joins, leaves while its join is in flight; b joins meanwhile; then b leaves too.
    await asyncio.gather(
        hub.subscribe("race", a), hub.unsubscribe("race", a), hub.subscribe("race", b)
    )
    assert hub.joined == {"race"} and hub.sockets == {"race": {b}}
    assert len(hub.layer.groups[group]) == 1
    await asyncio.gather(
        hub.unsubscribe("race", b), hub.subscribe("race", a), hub.unsubscribe("race", a)
    )
    assert hub.joined == set() and hub.sockets == {}
    assert group not in hub.layer.groups
    assert hub._pending == {} and hub._joins == {}


async def test_a_socket_that_could_never_receive_is_refused(settings):
    # With the Fanout backend hints go to the proxy, never to this server's sockets.
    settings.PUSHGATEWAY = {
        "BACKEND": "pushgateway.backends.fanout.FanoutBackend",
        "OPTIONS": {"GRIP_URL": "http://127.0.0.1:9?key=k"},
    }
    socket = WebsocketCommunicator(application, "/ws/pushgateway/", headers=ORIGIN)
    connected, _ = await socket.connect()
    assert not connected


async def test_subscribes_past_the_rate_limit_are_refused_and_the_socket_keeps_working(
    settings, monkeypatch
):
    # Not read for a while after each refusal (Reply.hold): not here, where time is short.
    monkeypatch.setattr(consumer_module, "MAX_HOLD_SECONDS", 0)
    settings.PUSHGATEWAY = {
        "BACKEND": "pushgateway.backends.channels.ChannelsBackend",
        "OPTIONS": {"SUBSCRIBE_BURST": 3, "SUBSCRIBE_RATE": 0.5},
    }
    socket = await connect()
    for channel in ("r1", "r2", "r3"):
        await subscribe(socket, channel)
    for n in range(constants.MAX_ERRORS + 5):  # refusals never close the connection
        refused = await send(socket, {"type": "subscribe", "channel": f"more-{n}"})
        assert (refused["code"], refused["retry_after"]) == (ErrorCode.RATE_LIMITED, 2.0)
    await pushgateway.apublish("r1", "still here")
    assert (await receive(socket))["data"] == "still here"
    await socket.disconnect()


async def test_answers_count_toward_the_slow_reader_cap(monkeypatch):
    """A client that sends pings and never reads the pongs is closed like one that does not
    read its hints (under daphne; tests/integration/test_slow_client.py runs the real thing)."""
    from channels_app import consumer

    class Writer:  # what the consumer reads of a known server's transport (adapters)
        held = 0
        transport = None

        def pending(self):
            return self.held

        def write(self, frame):
            return False  # the test's communicator reads ASGI messages only

    writer = Writer()
    monkeypatch.setattr(consumer, "frame_writer", lambda send: writer)
    socket = await connect()
    assert await send(socket, {"type": "ping"}) == {"type": "pong"}
    writer.held = consumer.MAX_PENDING_BYTES + 1  # the pongs pile up unread
    await socket.send_to(text_data='{"type": "ping"}')
    assert await socket.receive_output(timeout=2) == {"type": "websocket.close", "code": 4013}


@pytest.mark.parametrize("app", [application, pushgateway_socket], ids=["asgi", "routing"])
def test_an_open_socket_keeps_one_coroutine_alive_the_consumers_own(app):
    # Idle sockets cost memory: no router's or wrapper's coroutine awaits the consumer's.
    scope = {"type": "websocket", "path": WEBSOCKET_PATH, "headers": []}
    coroutine = app(scope, None, None)
    try:
        assert coroutine.cr_code is PushGatewayConsumer.__call__.__code__
    finally:
        coroutine.close()


async def test_a_hint_sent_while_the_position_was_on_its_way_is_not_undone_by_the_confirmation(
    monkeypatch,
):
    # Found by tests/system/test_rolling_restart.py: the position for a `subscribed` frame was
    # read (nothing published yet), the channel's first hint reached the hub and went out on
    # the socket before the consumer sent that frame, and the frame then said START: the page
    # took it for a new start behind the hint it had just been sent.
    socket = await connect()
    hub = get_hub()
    read_position = hub.position

    async def position(channel):
        found = await read_position(channel)
        await pushgateway.apublish(channel, "first")
        while hub.known.get(channel) == found:  # the hub delivers it before we answer
            await asyncio.sleep(0.01)
        return found

    monkeypatch.setattr(hub, "position", position)
    await socket.send_to(text_data=json.dumps({"type": "subscribe", "channel": "raced"}))
    message, subscribed = await receive(socket), await receive(socket)
    assert message["type"] == "message" and subscribed["type"] == "subscribed"
    assert subscribed["position"] == message["position"]
    await socket.disconnect()
