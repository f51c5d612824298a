"""Contract tests of pushgateway/adapters.py against the installed Django and channels_redis.

Each adapter relies on something its library does not promise; each test here fails when a
release changes it. Those that need a real Redis are in tests/integration/test_adapters.py.
"""

import contextlib
import inspect

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis import core, pubsub, utils
from django.db import transaction

from pushgateway import adapters

NAMES = ["pushgateway.comments-7", "asgi__group__pushgateway.events", "x" * 99, "é"]


@pytest.mark.parametrize("shards", [1, 2, 3, 5])
def test_shard_placement_is_the_one_the_core_layer_computes(shards):
    layer = core.RedisChannelLayer(hosts=[f"redis://127.0.0.1:{6379 + n}" for n in range(shards)])
    assert [adapters.channels_redis_shard(name, shards) for name in NAMES] == [
        layer.consistent_hash(name) for name in NAMES
    ]


def test_the_pub_sub_layer_names_a_groups_redis_channel_as_the_adapter_does():
    layer = pubsub.RedisPubSubLoopLayer(hosts=["redis://127.0.0.1:6379"], prefix="pfx")
    group = "pushgateway.comments-7"
    assert layer._get_group_channel_name(group) == adapters.pubsub_group_channel("pfx", group)
    # ...and picks its shard by that name, with the hash the adapter uses.
    assert layer._get_shard(group) is layer._shards[0]
    assert "_consistent_hash(channel_or_group_name" in inspect.getsource(layer._get_shard)


def test_the_default_prefix_is_channels_redis_own():
    assert pubsub.RedisPubSubLoopLayer().prefix == adapters.CHANNELS_REDIS_PREFIX
    assert core.RedisChannelLayer().prefix == adapters.CHANNELS_REDIS_PREFIX


def test_the_pub_sub_layers_default_payload_is_the_bare_msgpack_map():
    message = {"type": "pushgateway.frame", "channel": "a", "frame": "{}", "seq": 3, "t": 1.5}
    config = {}
    layer = pubsub.RedisPubSubChannelLayer(**config)
    assert adapters.pubsub_payload_is_msgpack(config)
    assert adapters.decode_pubsub_payload(layer.serialize(message)) == message
    assert layer.deserialize(layer.serialize(message)) == message


@pytest.mark.parametrize(
    "config", [{"serializer_format": "json"}, {"symmetric_encryption_keys": ["secret"]}]
)
def test_other_payloads_are_recognised_as_such(config):
    message = {"type": "x", "n": 1}
    layer = pubsub.RedisPubSubChannelLayer(**config)
    assert not adapters.pubsub_payload_is_msgpack(config)
    try:
        decoded = adapters.decode_pubsub_payload(layer.serialize(message))
    except Exception:  # msgpack's errors have no common base
        decoded = None
    assert decoded != message  # a script could not write these


def test_hosts_are_read_as_the_layers_read_them():
    sentinel = {"master_name": "m", "sentinels": [("127.0.0.1", 26379)]}
    hosts = ["redis://a:1/0", {"address": "redis://b:2", "socket_timeout": None}, sentinel]
    assert adapters.channels_redis_hosts({"hosts": hosts}) == [
        {"address": "redis://a:1/0"},
        {"address": "redis://b:2", "socket_timeout": None},
        sentinel,
    ]
    assert adapters.channels_redis_hosts({}) == utils.decode_hosts(None)


def test_the_core_layers_blocking_receive_waits_brpop_timeout_seconds():
    assert adapters.core_layer_receive_timeout(core.RedisChannelLayer) == 5
    assert "timeout=self.brpop_timeout" in inspect.getsource(core.RedisChannelLayer)
    for other in (pubsub.RedisPubSubChannelLayer, InMemoryChannelLayer):
        assert adapters.core_layer_receive_timeout(other) is None


def test_a_host_without_socket_timeout_gets_redis_pys_default():
    pool = utils.create_pool({"address": "redis://127.0.0.1:6379/0"})
    assert pool.make_connection().socket_timeout == adapters.redis_default_socket_timeout()
    assert adapters.redis_default_socket_timeout() == 5  # redis-py 8 (PARTS.md)


# Django's run_on_commit, as on_commit_keys relies on it.


def keys_of(callback):
    return getattr(callback, "keys", [])


class Hint:
    def __init__(self, *keys):
        self.keys = list(keys)

    def __call__(self):
        pass


class Rollback(Exception):
    pass


@pytest.mark.matrix  # Django's internals: every Django version
@pytest.mark.django_db(transaction=True)
def test_on_commit_appends_to_one_list_and_a_savepoint_rollback_replaces_it():
    connection = transaction.get_connection()  # the wrapper itself, as publish() has it
    with transaction.atomic():
        hooks = connection.run_on_commit
        transaction.on_commit(Hint("a"))
        assert connection.run_on_commit is hooks  # appended, not replaced
        [(savepoint_ids, callback, robust)] = hooks
        assert keys_of(callback) == ["a"] and robust is False
        pending = adapters.on_commit_keys(connection, keys_of)
        assert pending == {"a"}
        assert adapters.on_commit_keys(connection, keys_of) is pending  # built once
        pending.add("b")  # what the caller registers next
        transaction.on_commit(Hint("b"))
        with pytest.raises(Rollback), transaction.atomic():
            transaction.on_commit(Hint("c"))
            pending.add("c")
            raise Rollback
        assert connection.run_on_commit is not hooks  # the savepoint's callbacks dropped
        assert adapters.on_commit_keys(connection, keys_of) == {"a", "b"}


@pytest.mark.matrix
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_commit_and_rollback_start_a_new_list(ending):
    connection = transaction.get_connection()
    ran = []
    with contextlib.suppress(Rollback), transaction.atomic():
        hooks = connection.run_on_commit
        transaction.on_commit(lambda: ran.append(1))
        assert adapters.on_commit_keys(connection, keys_of) == set()
        if ending == "rollback":
            raise Rollback
    assert connection.run_on_commit is not hooks and connection.run_on_commit == []
    assert ran == ([1] if ending == "commit" else [])
    with transaction.atomic():
        assert adapters.on_commit_keys(connection, keys_of) == set()
    # Nothing of pushgateway's is stored on Django's connection object.
    assert not [name for name in vars(connection) if "pushgateway" in name]
