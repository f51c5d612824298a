"""Identical hints in quick succession go out once per process (OPTIONS["COALESCE"])."""

import asyncio
import threading
import time

import pytest
from django.db import connections, transaction

from demo.models import Event
from pushgateway.backends import get_backend
from pushgateway.coalescing import Coalescer
from pushgateway.message import Message

pytestmark = pytest.mark.servers


def redis_layer(settings, redis, **options):
    hosts = [{"address": redis.url, "socket_timeout": None}]
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": hosts},
        }
    }
    settings.PUSHGATEWAY = {"OPTIONS": options}
    return get_backend()


def listen(redis_url, channels, heard, ready, stop):
    """A process's hub, as Redis sees it: every publish on the channels' groups, with its time."""
    import redis as redis_py

    from pushgateway.adapters import CHANNELS_REDIS_PREFIX, pubsub_group_channel
    from pushgateway.layer import group_name

    with redis_py.Redis.from_url(redis_url) as client, client.pubsub() as pubsub:
        names = [pubsub_group_channel(CHANNELS_REDIS_PREFIX, group_name(c)) for c in channels]
        pubsub.subscribe(*names)
        ready.set()
        while not stop.is_set():
            item = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if item is not None:
                heard.append((item["channel"].decode().rsplit(".", 1)[-1], time.monotonic()))


@pytest.mark.django_db(databases=["default", "postgres"], transaction=True)
def test_a_thousand_saves_of_one_object_in_a_second_send_a_dozen_hints_at_most(settings, redis):
    backend = redis_layer(settings, redis)  # COALESCE: the default window, 0.5 s
    event = Event.objects.using("postgres").create(title="hot")
    backend.flush(5)
    channels = [f"demo.event.{event.pk}", "events"]
    heard, ready, stop = [], threading.Event(), threading.Event()
    listener = threading.Thread(target=listen, args=(redis.url, channels, heard, ready, stop))
    listener.start()
    ready.wait(5)

    def save_many(n):
        try:
            for i in range(n):
                with transaction.atomic(using="postgres"):
                    event.title = f"hot {i}"
                    event.save(using="postgres")
        finally:
            connections["postgres"].close()

    started = time.monotonic()
    threads = [threading.Thread(target=save_many, args=(250,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    backend.flush(5)
    time.sleep(1)  # the last window's hint
    stop.set()
    listener.join(5)
    per_channel = {c: [t for name, t in heard if name == c.rsplit(".", 1)[-1]] for c in channels}
    for channel, times in per_channel.items():
        # One at once, then at most one per window; the saves took `elapsed` (about 1 s).
        assert 2 <= len(times) <= max(12, elapsed / 0.5 + 2), (channel, len(times), elapsed)
        assert times[0] - started < 0.5  # the first is not delayed
    assert backend.stats["coalesced"] >= 2 * 1000 - 24


def test_the_last_hint_of_a_burst_always_goes_out():
    coalescer = Coalescer(0.5)
    first, second, third = (Message("c", {"pk": "1"}, id=str(n)) for n in range(3))
    assert coalescer.admit(first, now=10.0)  # at once
    assert not coalescer.admit(second, now=10.1)
    assert not coalescer.admit(third, now=10.2)  # held: the latest wins
    assert coalescer.next_due() == pytest.approx(10.5)
    assert coalescer.due(10.4) == []
    assert [m.id for m in coalescer.due(10.5)] == ["2"]
    assert coalescer.admit(Message("c", {"pk": "1"}), now=11.1)  # a new window
    assert coalescer.admit(Message("c", {"pk": "2"}), now=11.1)  # other data: not the same


def test_a_coalesced_hint_from_two_pages_skips_neither():
    coalescer = Coalescer(0.5)
    coalescer.admit(Message("c", 1, client="page-a"), now=1.0)
    coalescer.admit(Message("c", 1, client="page-a"), now=1.1)
    coalescer.admit(Message("c", 1, client="page-b"), now=1.2)
    [held] = coalescer.due(1.5)
    assert held.client is None


def test_coalescing_can_be_turned_off_and_flushing_sends_what_waits(settings, redis):
    off = redis_layer(settings, redis, COALESCE=0)
    assert off.sender.coalescer is None
    on = redis_layer(settings, redis, COALESCE=30)
    on.send_messages([Message("c", 1), Message("c", 1)])
    assert on.stats["coalesced"] == 1
    assert on.flush(5) and on.stats["sent"] == 2  # at exit nothing waits 30 s
    with pytest.raises(ValueError, match="COALESCE must be seconds >= 0"):
        redis_layer(settings, redis, COALESCE=-1)
    asyncio.run(asyncio.sleep(0))
