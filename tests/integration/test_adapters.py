"""Contract tests of pushgateway/adapters.py against channels_redis on real Redis servers.

The pub/sub publisher (backends/pubsub.py) writes to Redis what channels_redis' layers would
write, where they would write it, without going through them: these tests fail as soon as
an installed channels_redis names, places or encodes differently. Those that need no server
are in tests/unit/test_adapters.py.
"""

import asyncio
import time

import pytest
import redis as redis_py
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from pushgateway import adapters

pytestmark = pytest.mark.servers

GROUPS = [f"pushgateway.adapter-{n}" for n in range(16)]


def hosts(*servers):
    return [{"address": server.url, "socket_timeout": None} for server in servers]


def test_the_pub_sub_layer_publishes_a_group_on_the_name_and_payload_the_adapter_says(redis):
    layer = RedisPubSubChannelLayer(hosts=hosts(redis), prefix="contract")
    message = {"type": "pushgateway.frame", "channel": "a", "frame": "{}", "seq": 7, "t": 1.25}
    name = adapters.pubsub_group_channel("contract", "pushgateway.a")
    with redis_py.Redis.from_url(redis.url) as client, client.pubsub() as listener:
        listener.subscribe(name)
        listener.get_message(timeout=5)  # the subscription's confirmation

        async def send():
            await layer.group_send("pushgateway.a", message)
            await layer.flush()

        asyncio.run(send())
        item = listener.get_message(timeout=5)
    assert item is not None and item["channel"].decode() == name
    assert adapters.decode_pubsub_payload(item["data"]) == message


def test_a_message_a_redis_script_packs_reaches_the_pub_sub_layers_group_members(redis):
    """What backends/pubsub.py relies on: PUBLISH of PUBSUB_PACK_LUA(event) on the group's
    name is a group_send as far as the layer's subscribers can tell."""
    layer = RedisPubSubChannelLayer(hosts=hosts(redis), prefix="contract")
    script = f"""redis.call('PUBLISH', KEYS[1], {adapters.PUBSUB_PACK_LUA}(
        {{type = 'pushgateway.frame', frame = ARGV[1], seq = 3, t = 1.5}}))"""

    async def receive():
        member = await layer.new_channel()
        await layer.group_add("pushgateway.b", member)
        name = adapters.pubsub_group_channel("contract", "pushgateway.b")
        _wait_subscribed([redis], {name})
        with redis_py.Redis.from_url(redis.url) as client:
            client.eval(script, 1, name, '{"type":"message"}')
        event = await asyncio.wait_for(layer.receive(member), 5)
        await layer.flush()
        return event

    assert asyncio.run(receive()) == {
        "type": "pushgateway.frame",
        "frame": '{"type":"message"}',
        "seq": 3,
        "t": 1.5,
    }


def test_the_pub_sub_layer_subscribes_a_new_channel_under_the_name_the_adapter_says(redis):
    layer = RedisPubSubChannelLayer(hosts=hosts(redis), prefix="contract")

    async def subscribed():
        channel = await layer.new_channel("pushgateway.hub.")
        _wait_subscribed([redis], {channel})  # the name the layer gave is the Redis channel
        await layer.flush()
        return channel

    channel = asyncio.run(subscribed())
    assert channel.startswith(adapters.pubsub_own_channel_start("contract", "pushgateway.hub."))


def test_shard_placement_on_two_shards_is_where_each_layer_puts_a_group(redis, own_redis):
    servers = (redis, own_redis)
    pubsub_layer = RedisPubSubChannelLayer(hosts=hosts(*servers), prefix="contract")
    core_layer = RedisChannelLayer(hosts=hosts(*servers), prefix="contract")

    async def join_all():
        member = await pubsub_layer.new_channel()
        for group in GROUPS:
            await pubsub_layer.group_add(group, member)
            await core_layer.group_add(group, "member!x")
        names = {adapters.pubsub_group_channel("contract", g) for g in GROUPS}
        where = _wait_subscribed(servers, names)
        keys = [_keys(server, "contract:group:*") for server in servers]
        await pubsub_layer.flush()
        await core_layer.flush()
        await core_layer.close_pools()
        return where, keys

    where, keys = asyncio.run(join_all())
    for group in GROUPS:
        # The pub/sub layer places a group by its Redis channel, the core layer by its name.
        name = adapters.pubsub_group_channel("contract", group)
        shard = adapters.channels_redis_shard(name, 2)
        assert [name in found for found in where] == [shard == 0, shard == 1], group
        assert adapters.layer_group_shard(pubsub_layer, "contract", group, 2) == shard
        shard = adapters.channels_redis_shard(group, 2)
        key = f"contract:group:{group}"
        assert [key in found for found in keys] == [shard == 0, shard == 1], group
        assert adapters.layer_group_shard(core_layer, "contract", group, 2) == shard
    # The groups are spread: both shards are tested.
    assert all(where) and all(keys)


def _wait_subscribed(servers, names: set[str]) -> list[set[str]]:
    """The Redis channels each server has subscribers on, once `names` are among them (a
    SUBSCRIBE sent on another connection may not have been read yet)."""
    deadline = time.monotonic() + 5
    while True:
        found = []
        for server in servers:
            with redis_py.Redis.from_url(server.url) as client:
                found.append({name.decode() for name in client.pubsub_channels()})
        if names <= set().union(*found) or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def _keys(server, pattern: str) -> set[str]:
    with redis_py.Redis.from_url(server.url) as client:
        return {key.decode() for key in client.keys(pattern)}
