"""Stream positions: the stores, and how a dropped hint still reaches its pages."""

import asyncio
import threading
import time

import pytest

from pushgateway.backends.dummy import DummyBackend
from pushgateway.constants import POSITION_READ_CHUNK
from pushgateway.message import Message
from pushgateway.positions import MemoryPositions, RedisPositions
from pushgateway.protocol import START, Position
from pushgateway.sender import BackgroundSender


def stores(redis_url):
    return [MemoryPositions(), RedisPositions([redis_url], prefix=f"t{time.monotonic_ns()}")]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_each_publish_advances_its_channel_by_one_in_one_epoch(redis, kind):
    store = stores(redis.url)[kind == "redis"]
    first = store.advance(["a", "b", "a"])
    assert [p.seq for p in first] == [1, 1, 2]
    assert first[0].epoch == first[2].epoch != ""
    assert store.advance(["a"]) == [Position(first[0].epoch, 3)]
    assert store.read(["a", "b", "never"]) == {
        "a": Position(first[0].epoch, 3),
        "b": first[1],
        "never": START,  # nothing published: reads create nothing
    }
    assert asyncio.run(store.aread(["a"])) == {"a": Position(first[0].epoch, 3)}


def test_redis_reads_of_unknown_channels_store_nothing(redis):
    store = RedisPositions([redis.url], prefix="t-unknown")
    store.read([f"random-{n}" for n in range(100)])
    assert store.shards()[0].client.keys("t-unknown:*") == []


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_forgotten_channel_starts_a_fresh_epoch(redis, kind):
    # A page that saw the old stream must notice the new one, however far it got.
    store = stores(redis.url)[kind == "redis"]
    store.ttl = 1
    [old] = store.advance(["a"])
    time.sleep(2.1)  # Redis expires in whole seconds
    assert store.read(["a"]) == {"a": START}
    [new] = store.advance(["a"])
    assert new.seq == 1 and new.epoch != old.epoch


def test_a_large_read_goes_in_bounded_chunks(own_redis):
    """The hub's check of every joined channel reads them all at once: it reaches Redis as
    scripts of at most POSITION_READ_CHUNK channels, each answer in place."""
    store = RedisPositions([own_redis.url], prefix="t-chunks")
    channels = [f"chunk-{n}" for n in range(2 * POSITION_READ_CHUNK + 50)]
    published = dict(zip(channels[::3], store.advance(channels[::3]), strict=True))
    store.read(["warm-up"])  # the script is loaded once; count only the reads below
    with own_redis.client() as client:
        for read in (store.read, lambda c: asyncio.run(store.aread(c))):
            client.config_resetstat()
            found = read(channels)
            assert found == {c: published.get(c, START) for c in channels}
            calls = client.info("commandstats")["cmdstat_evalsha"]["calls"]
            assert calls == 3  # 450 channels: 200 + 200 + 50


def test_redis_positions_survive_the_process_and_are_shared(redis):
    one = RedisPositions([redis.url], prefix="t-shared")
    [position] = one.advance(["c"])
    one.close()
    two = RedisPositions([redis.url], prefix="t-shared")
    assert two.read(["c"]) == {"c": position}


def wait_until(done, timeout=20):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_redis_restored_from_an_older_snapshot_starts_new_epochs(start_redis):
    # The snapshot holds seq 2; pages saw seq 5. Whatever comes first after the restart (a
    # page's read or a publish), no seq of that epoch is given to another hint.
    server = start_redis()
    store = RedisPositions([server.url])
    store.advance(["read-first", "published-first"] * 2)
    with server.client() as client:
        client.save()
    store.advance(["read-first", "published-first"] * 3)
    seen = store.read(["read-first", "published-first"])
    assert {p.seq for p in seen.values()} == {5}
    server.stop(kill=True)
    server.start()

    read = store.read(["read-first"])["read-first"]
    assert read.epoch != seen["read-first"].epoch and read.seq == 0
    assert store.advance(["read-first"]) == [Position(read.epoch, 1)]
    [published] = store.advance(["published-first"])
    assert published.epoch != seen["published-first"].epoch and published.seq == 1
    # Within this Redis's life the epochs hold: nothing starts over twice.
    assert store.advance(["read-first", "published-first"]) == [
        Position(read.epoch, 2),
        Position(published.epoch, 2),
    ]


def test_a_promoted_replica_that_lagged_and_a_primary_resynced_from_it_start_new_epochs(
    start_redis,
):
    first = start_redis()
    second = start_redis("--replicaof", "127.0.0.1", str(first.port))
    on_first, on_second = RedisPositions([first.url]), RedisPositions([second.url])
    with first.client() as primary, second.client() as replica:
        wait_until(lambda: replica.info("replication")["master_link_status"] == "up")
        seen = on_first.advance(["c", "d"])  # seq 1 of each, replicated
        assert primary.execute_command("WAIT", 1, 5000) == 1
        replica.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
        on_first.advance(["c", "d"] * 2)  # seqs 2 and 3 never reach the replica
        replica.execute_command("REPLICAOF", "NO", "ONE")
        replica.execute_command("CLIENT", "UNPAUSE")
        assert replica.hget(on_second.key("c"), "s") == b"1"  # it lagged

        # The promoted replica: seqs 2 and 3 of those epochs were given on the old primary.
        [promoted] = on_second.advance(["c"])
        assert promoted.epoch != seen[0].epoch and promoted.seq == 1

        # The old primary is demoted, takes the promoted replica's data (where "d" is still
        # seq 1, stamped with the old primary's own run id) and is promoted again: the same
        # run id, a new replication id.
        primary.execute_command("REPLICAOF", "127.0.0.1", str(second.port))
        wait_until(lambda: primary.hget(on_first.key("c"), "e") == promoted.epoch.encode())
        primary.execute_command("REPLICAOF", "NO", "ONE")
        [again] = on_first.advance(["d"])
        assert again.epoch != seen[1].epoch and again.seq == 1


def test_redis_that_is_down_raises_within_the_timeout(log_dir):
    from tests.support.servers import free_port

    store = RedisPositions([f"redis://127.0.0.1:{free_port()}/0"], timeout=1)
    started = time.monotonic()
    with pytest.raises(Exception, match="(?i)connect"):
        store.read(["a"])
    assert time.monotonic() - started < 2


def test_sentinels_that_are_down_raise_within_the_timeout():
    from tests.support.servers import free_port

    host = {"sentinels": [("127.0.0.1", free_port()), ("127.0.0.1", free_port())]}
    store = RedisPositions([{**host, "master_name": "gone"}], timeout=1)
    started = time.monotonic()
    with pytest.raises(Exception, match="(?i)no master found"):
        store.read(["a"])
    with pytest.raises(Exception, match="(?i)no master found"):
        asyncio.run(store.aread(["a"]))
    assert time.monotonic() - started < 2


async def test_an_event_loop_too_busy_to_read_the_answer_in_time_still_gets_the_position(
    redis, caplog
):
    # A reconnect storm keeps daphne's loop busy past TIMEOUT while Redis has long answered:
    # one missed deadline must not tell every page of that batch to refetch.
    backend = DummyBackend()
    backend.positions = RedisPositions([redis.url], prefix="t-busy", timeout=0.2)
    [expected] = backend.positions.advance(["busy"])
    assert await backend.aread_positions(["busy"]) == {"busy": expected}  # connected

    read = asyncio.ensure_future(backend.aread_positions(["busy"]))
    await asyncio.sleep(0)  # the read is sent and waits for its answer...
    time.sleep(0.5)  # ...while the loop is busy past the deadline
    assert await read == {"busy": expected}
    assert "cannot read positions" not in caplog.text


def test_a_hint_given_up_is_repaired_once_delivery_works_again():
    up = threading.Event()
    repaired = []

    def deliver(batch):
        if not up.is_set():
            raise ConnectionError("down")

    def repair(channels):
        deliver(channels)
        repaired.append(channels)

    sender = BackgroundSender(deliver, name="t", repair=repair)
    sender.submit([Message("comments-1"), Message("comments-2"), Message("comments-1")])
    assert sender.flush(5)
    assert sender.stats["failed"] == 3 and sender.lost == ["comments-1", "comments-2"]
    time.sleep(1.5)  # repair is tried meanwhile, and fails
    assert repaired == [] and sender.lost == ["comments-1", "comments-2"]
    up.set()
    deadline = time.monotonic() + 5
    while not repaired and time.monotonic() < deadline:
        time.sleep(0.05)
    assert repaired == [["comments-1", "comments-2"]]
    assert sender.lost == [] and sender.stats["repaired"] == 2
    sender.close()


def test_hints_dropped_from_a_full_queue_are_repaired_too():
    release = threading.Event()
    repaired = []
    sender = BackgroundSender(
        lambda batch: release.wait(5), name="t", repair=repaired.extend, max_queue=1, max_batch=1
    )
    sender.submit([Message("a")])
    time.sleep(0.1)  # the thread holds "a"
    sender.submit([Message("b"), Message("c")])  # b queued, c dropped
    assert sender.stats["dropped"] == 1 and sender.lost == ["c"]
    release.set()
    assert sender.flush(5)
    deadline = time.monotonic() + 5
    while not repaired and time.monotonic() < deadline:
        time.sleep(0.05)
    assert repaired == ["c"]
    sender.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_sender_thread_that_died_is_replaced():
    delivered = []

    def deliver(batch):
        if batch[0].channel == "fatal":
            raise SystemExit  # escapes the retry loop and ends the thread
        delivered.extend(m.channel for m in batch)

    sender = BackgroundSender(deliver, name="t")
    sender.submit([Message("fatal")])
    sender._thread.join(5)
    assert not sender._thread.is_alive()
    sender.submit([Message("after")])
    assert sender.flush(5)
    assert delivered == ["after"]
    sender.close()
