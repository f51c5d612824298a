"""Each backend, and the background sender that keeps network backends off the request path."""

import asyncio
import io
import json
import threading
import time

import pytest
from channels.layers import get_channel_layer

import pushgateway
from pushgateway import protocol
from pushgateway.backends import get_backend
from pushgateway.backends.channels import (
    ChannelsBackend,
    LayerPublisher,
    RedisPubSubPublisher,
    layer_event,
)
from pushgateway.backends.console import ConsoleBackend
from pushgateway.backends.dummy import DummyBackend
from pushgateway.message import Message
from pushgateway.positions import MemoryPositions, RedisPositions
from pushgateway.protocol import START, Position
from pushgateway.sender import BackgroundSender, backoff_delays


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
    await layer.group_add(protocol.group_name("comments-7"), listener)
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
    await layer.group_discard(protocol.group_name("comments-7"), listener)


def test_channels_backend_without_the_layer_says_which(settings):
    with pytest.raises(RuntimeError, match="no channel layer 'other'"):
        ChannelsBackend(LAYER="other")


def test_backoff_delays_follow_urllib3():
    assert backoff_delays(3, 0.3) == [0.0, 0.6, 1.2]
    assert backoff_delays(0, 0.3) == []


def test_sender_retries_then_delivers():
    attempts = []

    def deliver(batch):
        attempts.append(len(batch))
        if len(attempts) < 3:
            raise ConnectionError("down")

    sender = BackgroundSender(deliver, name="t", retries=3, backoff_factor=0)
    sender.submit([Message("a"), Message("b")])
    assert sender.flush(5)
    assert attempts == [2, 2, 2]
    assert sender.stats["sent"] == 2 and sender.stats["retries"] == 2
    sender.close()


def test_sender_gives_up_counts_and_logs(caplog):
    def deliver(batch):
        raise ConnectionError("still down")

    sender = BackgroundSender(deliver, name="t", retries=2, backoff_factor=0)
    sender.submit([Message("a")])
    assert sender.flush(5)
    assert sender.stats["failed"] == 1
    assert "gave up on 1 hint(s) after 3 attempts: still down" in caplog.text
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
        await receiver.group_add(protocol.group_name(channel), hub_channel)
        backend.send_messages(messages)
        events = [await asyncio.wait_for(receiver.receive(hub_channel), 5) for _ in messages]
        await receiver.group_discard(protocol.group_name(channel), hub_channel)
        return events

    events = asyncio.run(receive())
    epoch = events[0]["epoch"]
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
