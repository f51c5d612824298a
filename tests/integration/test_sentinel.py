"""Redis Sentinel: the position store, the Lua publisher and the layer follow a failover.

Real processes: a primary and a replica under three sentinels (tests/support/servers.py).
"""

import asyncio
import time

from channels.layers import get_channel_layer

from pushgateway.backends import get_backend
from pushgateway.backends.pubsub import RedisPubSubPublisher
from pushgateway.layer import group_name
from pushgateway.message import Message
from pushgateway.positions import RedisPositions
from pushgateway.protocol import Position

PUBSUB_LAYER = "channels_redis.pubsub.RedisPubSubChannelLayer"


async def test_positions_and_publishes_follow_a_failover_to_a_replica_that_lagged(
    settings, sentinel_redis
):
    hosts = [{**sentinel_redis.host, "socket_timeout": None}]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": PUBSUB_LAYER, "CONFIG": {"hosts": hosts}}}
    backend = get_backend()
    assert type(backend.publisher) is RedisPubSubPublisher
    assert isinstance(backend.positions, RedisPositions)
    layer = get_channel_layer()  # what a hub subscribes through
    hub_channel = await layer.new_channel()
    await layer.group_add(group_name("c"), hub_channel)

    async def published(n: int) -> dict:
        """Publish hint `n` on "c" until the layer delivers it (a subscription broken by
        the failover takes a moment to come back: the hub heals that gap with a resync)."""
        deadline = time.monotonic() + 20
        while True:
            backend.send_messages([Message("c", {"n": n})])
            assert await asyncio.to_thread(backend.flush, 20)
            try:
                while True:
                    event = await asyncio.wait_for(layer.receive(hub_channel), 1)
                    if f'"n":{n}' in event["frame"].replace(" ", ""):
                        return event
            except TimeoutError:
                assert time.monotonic() < deadline, "the layer delivered nothing"

    first = await published(1)
    before = Position(first["epoch"], first["seq"])
    assert await backend.aread_positions(["c"]) == {"c": before}
    assert backend.read_positions(["c"]) == {"c": before}

    def meanwhile():  # on the primary only: the replica will not have seen these
        backend.send_messages([Message("c", {"n": 2}), Message("c", {"n": 3})])
        assert backend.flush(5)

    await asyncio.to_thread(sentinel_redis.fail_over_lagging, meanwhile)
    with sentinel_redis.replica.client() as promoted:
        assert promoted.hget(backend.positions.key("c"), "s") == b"1"  # it lagged

    # The promoted replica's copy is the old primary's: seq 2 and 3 are not handed out again.
    after = await published(4)
    assert after["epoch"] != before.epoch
    now = Position(after["epoch"], after["seq"])
    assert await backend.aread_positions(["c"]) == {"c": now}  # the hub's reads follow too
    assert backend.read_positions(["c"]) == {"c": now}
    assert backend.stats["failed"] == 0  # retried through the failover, none given up
    await layer.flush()
