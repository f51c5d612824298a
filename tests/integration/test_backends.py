"""Each backend, and the background sender that keeps network backends off the request path."""

import asyncio
import io
import json
import os
import signal
import socket
import threading
import time

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

import pushgateway
from pushgateway import adapters
from pushgateway.backends import get_backend
from pushgateway.backends.channels import ChannelsBackend, LayerPublisher, layer_event
from pushgateway.backends.console import ConsoleBackend
from pushgateway.backends.dummy import DummyBackend
from pushgateway.backends.pubsub import RedisPubSubPublisher
from pushgateway.layer import EVENT_FIELDS, group_name
from pushgateway.message import Message
from pushgateway.positions import MemoryPositions, RedisPositions
from pushgateway.protocol import START, Position
from pushgateway.sender import BackgroundSender, DeliveryError

PUBSUB_LAYER = "channels_redis.pubsub.RedisPubSubChannelLayer"


def without_time(events):
    """Layer events without their publish time, after checking it is a recent one."""
    assert all(abs(event["t"] - time.time()) < 10 for event in events)
    return [{k: v for k, v in event.items() if k != "t"} for event in events]


def test_locmem_records_into_outbox(outbox):
    pushgateway.publish("a", {"x": 1})
    assert [(m.channel, m.data) for m in pushgateway.outbox] == [("a", {"x": 1})]


def test_console_writes_message_frames_with_their_positions():
    stream = io.StringIO()
    ConsoleBackend(stream=stream).send_messages([Message("a", {"x": 1}, id="m1"), Message("a")])
    first, second = map(json.loads, stream.getvalue().splitlines())
    assert first == {
        "type": "message",
        "channel": "a",
        "id": "m1",
        "data": {"x": 1},
        "position": {"epoch": first["position"]["epoch"], "seq": 1},
    }
    assert second["position"] == {"epoch": first["position"]["epoch"], "seq": 2}


def test_dummy_accepts_and_drops():
    DummyBackend().send_messages([Message("a")])


def test_unknown_options_are_a_type_error():
    with pytest.raises(TypeError, match=r"unknown options \['COLOUR'\]"):
        DummyBackend(COLOUR="red")


def test_backend_is_rebuilt_when_settings_change(settings):
    settings.PUSHGATEWAY = {"BACKEND": "pushgateway.backends.dummy.DummyBackend"}
    assert isinstance(get_backend(), DummyBackend)
    settings.PUSHGATEWAY = {"BACKEND": "pushgateway.backends.console.ConsoleBackend"}
    assert isinstance(get_backend(), ConsoleBackend)


async def test_channels_backend_sends_the_frame_to_the_channel_group():
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(group_name("comments-7"), listener)
    backend = ChannelsBackend()
    assert backend.in_process and isinstance(backend.positions, MemoryPositions)
    messages = [Message("comments-7", {"pk": "1"}), Message("comments-7", {"pk": "2"})]
    await backend.asend_messages(messages)
    events = [await asyncio.wait_for(layer.receive(listener), 2) for _ in messages]
    epoch = events[0]["epoch"]
    assert without_time(events) == [
        without_time([layer_event(message, Position(epoch, seq))])[0]
        for seq, message in enumerate(messages, 1)
    ]
    assert json.loads(events[1]["frame"])["position"] == {"epoch": epoch, "seq": 2}
    assert backend.read_positions(["comments-7", "other"]) == {
        "comments-7": Position(epoch, 2),
        "other": START,
    }
    await layer.group_discard(group_name("comments-7"), listener)


def test_channels_backend_without_the_layer_says_which(settings):
    with pytest.raises(RuntimeError, match="no channel layer 'other'"):
        ChannelsBackend(LAYER="other")


def test_the_sender_leaves_retries_to_the_client_library(caplog):
    calls = []

    def deliver(batch):
        calls.append(len(batch))
        raise DeliveryError("still down", attempts=4)  # the library tried four times

    sender = BackgroundSender(deliver, name="t")
    sender.submit([Message("a"), Message("b")])
    assert sender.flush(5)
    assert calls == [2]  # one call for the batch: no retries on top of the library's
    assert sender.stats["failed"] == 2 and sender.stats["sent"] == 0
    assert "gave up on 2 hint(s) after 4 attempts: still down (channels: a, b)" in caplog.text
    sender.close()


def test_the_sender_counts_what_a_partly_refused_batch_delivered(caplog):
    def deliver(batch):
        raise DeliveryError("HTTP 400: bad item", undelivered=[1], refused=True)

    sender = BackgroundSender(deliver, name="t")
    sender.submit([Message("a"), Message("b"), Message("c")])
    assert sender.flush(5)
    assert sender.stats["sent"] == 2 and sender.stats["failed"] == 1
    assert "the service refused 1 hint(s) on b: HTTP 400: bad item" in caplog.text
    sender.close()


def test_sender_queue_is_bounded_and_never_blocks(caplog):
    release = threading.Event()
    delivered = []

    def deliver(batch):
        release.wait(5)
        delivered.extend(batch)

    sender = BackgroundSender(deliver, name="t", max_queue=3, max_batch=1)
    sender.submit([Message("first")])
    # The thread now holds "first"; three more fill the queue, two more are dropped.
    for _ in range(100):
        if sender._queue.qsize() == 0:
            break
        threading.Event().wait(0.01)
    sender.submit([Message(f"m{i}") for i in range(5)])
    assert sender.stats["dropped"] == 2
    assert "queue full (3), dropped hint for 'm3'" in caplog.text
    release.set()
    assert sender.flush(5)
    assert [m.channel for m in delivered] == ["first", "m0", "m1", "m2"]
    sender.close()


def test_flush_times_out_while_delivery_hangs():
    release = threading.Event()
    sender = BackgroundSender(lambda batch: release.wait(5), name="t")
    sender.submit([Message("a")])
    assert sender.flush(0.05) is False
    release.set()
    assert sender.flush(5)
    sender.close()


@pytest.mark.parametrize(
    ("layer", "publisher"),
    [
        ("channels_redis.pubsub.RedisPubSubChannelLayer", RedisPubSubPublisher),
        ("channels_redis.core.RedisChannelLayer", LayerPublisher),
    ],
)
def test_channels_backend_reaches_real_redis_layers(settings, redis, layer, publisher):
    """What the hub of another process receives, through each channels_redis layer."""
    hosts = [{"address": redis.url, "socket_timeout": None}]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": layer, "CONFIG": {"hosts": hosts}}}
    backend = get_backend()
    assert type(backend.publisher) is publisher
    assert isinstance(backend.positions, RedisPositions)
    channel = f"comments-{layer.rsplit('.', 1)[1]}"  # the suite's Redis is shared
    messages = [Message(channel, {"pk": "1"}), Message(channel, {"pk": "2"})]

    async def receive():
        # In a loop of its own, closed at the end (channels_redis cleans up on close).
        receiver = get_channel_layer()
        hub_channel = await receiver.new_channel()
        await receiver.group_add(group_name(channel), hub_channel)
        backend.send_messages(messages)
        events = [await asyncio.wait_for(receiver.receive(hub_channel), 5) for _ in messages]
        await receiver.group_discard(group_name(channel), hub_channel)
        return events

    events = asyncio.run(receive())
    epoch = events[0]["epoch"]
    assert all(set(event) == set(EVENT_FIELDS) for event in events)
    # The same event the in-memory path makes, whichever way it was serialised (the
    # pub/sub layer's comes out of a Lua script that also advanced the position).
    assert without_time(events) == [
        without_time([layer_event(message, Position(epoch, seq))])[0]
        for seq, message in enumerate(messages, 1)
    ]
    assert backend.flush(5) and backend.stats["sent"] == 2
    # Any process sharing the Redis reads the same position.
    other = RedisPositions([redis.url])
    assert other.read([channel]) == {channel: Position(epoch, 2)}


def test_the_redis_script_publishes_the_frames_python_builds(redis):
    """Frames and events out of backends/pubsub.py's Lua script equal Python's, for the same
    head and position: a message whose data JSON escapes, a resync, a seq past 32 bits."""
    import redis as redis_py

    positions = RedisPositions([redis.url], prefix=f"t{time.monotonic_ns()}")
    publisher = RedisPubSubPublisher(positions)
    [big] = positions.advance(["big"])  # stamped by this Redis: its seq may be set
    positions.shards()[0].client.hset(positions.key("big"), "s", 2**40)
    messages = [
        Message("lua-a", {"pk": "1", "text": 'é "quoted" </script>'}, client="page-1"),
        Message("lua-a", resync=True),
        Message("big", None),
    ]
    with redis_py.Redis.from_url(redis.url) as client, client.pubsub() as pubsub:
        names = {positions.pubsub_name(m.channel) for m in messages}
        pubsub.subscribe(*names)
        for _ in names:  # subscribed before anything is published
            assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        publisher.publish(messages)
        events, deadline = [], time.monotonic() + 5
        while len(events) < len(messages) and time.monotonic() < deadline:
            item = pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if item is not None:
                events.append(adapters.decode_pubsub_payload(item["data"]))
    read = positions.read(["lua-a", "big"])
    assert read["big"] == Position(big.epoch, 2**40 + 1)
    expected = [
        layer_event(messages[0], Position(read["lua-a"].epoch, 1)),
        layer_event(messages[1], Position(read["lua-a"].epoch, 2)),
        layer_event(messages[2], read["big"]),
    ]
    assert without_time(events) == without_time(expected)
    assert [e["frame"] for e in events] == [e["frame"] for e in expected]  # the very text


class ClosingServer:
    """A "Redis" that accepts each connection and closes it at once, counting them."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self.listener.close()


def test_a_publish_to_redis_is_tried_retries_plus_one_times_then_given_up(settings, caplog):
    server = ClosingServer()
    hosts = [{"address": server.url, "socket_timeout": None}]
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": hosts},
        }
    }
    settings.PUSHGATEWAY = {"OPTIONS": {"RETRIES": 3, "BACKOFF_FACTOR": 0.05, "TIMEOUT": 1}}
    backend = get_backend()
    started = time.monotonic()
    backend.send_messages([Message("comments-1")])
    assert backend.flush(10)
    # redis-py's Retry: one attempt and three retries (0.1 + 0.2 + 0.4 s apart), no more.
    assert server.accepted == 4
    assert 0.7 <= time.monotonic() - started < 5
    assert backend.stats["failed"] == 1
    assert "gave up on 1 hint(s) after 4 attempts" in caplog.text
    server.close()


def test_a_redis_that_stops_answering_does_not_hold_the_core_layers_sender(
    settings, redis, own_redis, caplog
):
    """A group_send of channels_redis' core layer has no timeout of its own: the backend's
    TIMEOUT bounds it. Two shards: the channel's group and position on one, a member of the
    group on the other, which stops answering (SIGSTOP) after the position was advanced."""
    hosts = [{"address": url, "socket_timeout": None} for url in (redis.url, own_redis.url)]
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": hosts}}
    }
    settings.PUSHGATEWAY = {"OPTIONS": {"TIMEOUT": 0.5, "RETRIES": 1, "BACKOFF_FACTOR": 0.05}}
    backend = get_backend()
    layer, positions = backend.layer, backend.positions
    channel = next(
        c
        for c in (f"core-hang-{n}" for n in range(1000))
        if layer.consistent_hash(group_name(c)) == 0 and [*positions.by_shard([c])] == [0]
    )
    member = next(m for m in (f"member{n}" for n in range(1000)) if layer.consistent_hash(m) == 1)
    asyncio.run(_group_add(layer, group_name(channel), member))

    backend.send_messages([Message(channel, 1)])
    assert backend.flush(5) and backend.stats["sent"] == 1
    pid = own_redis.process.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        backend.send_messages([Message(channel, 2)])
        assert backend.flush(10)  # given up, not waiting for good
        assert time.monotonic() - started < 3  # two attempts of 0.5 s
        assert backend.stats["failed"] == 1
        assert "gave up on 1 hint(s) after 2 attempts" in caplog.text
    finally:
        os.kill(pid, signal.SIGCONT)
    backend.send_messages([Message(channel, 3)])
    assert backend.flush(5) and backend.stats["sent"] == 2  # the sender goes on


async def _group_add(layer, group: str, member: str) -> None:
    await layer.group_add(group, member)
    await layer.close_pools()


async def test_a_channel_layer_other_than_default_delivers_end_to_end(settings, redis):
    """OPTIONS["LAYER"]: the backend publishes on that layer and the hub subscribes on it."""
    from channels_app.asgi import application

    hosts = [{"address": redis.url, "socket_timeout": None}]
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
        "push": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": hosts},
        },
    }
    settings.PUSHGATEWAY = {"OPTIONS": {"LAYER": "push"}}
    socket = WebsocketCommunicator(
        application, "/ws/pushgateway/", headers=[(b"origin", b"http://127.0.0.1")]
    )
    connected, _ = await socket.connect()
    assert connected
    await socket.send_to(text_data=json.dumps({"type": "subscribe", "channel": "layer-push"}))
    subscribed = json.loads(await socket.receive_from(timeout=5))
    assert subscribed["type"] == "subscribed"
    await pushgateway.apublish("layer-push", {"pk": "1"})
    frame = json.loads(await socket.receive_from(timeout=5))
    assert frame["type"] == "message" and frame["data"] == {"pk": "1"}
    await socket.disconnect()
    await get_channel_layer("push").flush()
