"""The hub's healing, in-process: a layer path that breaks and comes back, a busy loop."""

import asyncio
import contextlib
import random
import time

import pytest
from channels.layers import InMemoryChannelLayer

from channels_app import hub as hub_module
from channels_app.hub import Hub
from pushgateway.layer import frame_event, group_name
from pushgateway.positions import MemoryPositions
from pushgateway.protocol import Position


class FlakyLayer:
    """An in-memory layer that can lose every message, as a Redis that went away does,
    while it still accepts them (so the hub cannot tell from the sends alone)."""

    def __init__(self) -> None:
        self.inner = InMemoryChannelLayer()
        self.losing = False
        self.group_adds = 0

    async def new_channel(self, prefix="specific."):
        return await self.inner.new_channel(prefix)

    async def receive(self, channel):
        return await self.inner.receive(channel)

    async def group_add(self, group, channel):
        self.group_adds += 1
        await self.inner.group_add(group, channel)

    async def group_discard(self, group, channel):
        await self.inner.group_discard(group, channel)

    async def group_send(self, group, message):
        if not self.losing:
            await self.inner.group_send(group, message)


class Socket:
    def __init__(self) -> None:
        self.frames = []
        self.batches = []  # how many frames each push_many carried

    def push(self, message):
        self.frames.append(message["text"])

    def push_many(self, batch):
        self.batches.append(len(batch.messages))
        for message in batch:
            self.push(message)


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(hub_module, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(hub_module, "RECHECK_SECONDS", 0.05)


async def until(condition, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def watched(hub: Hub, *channels: str) -> list[Socket]:
    """A socket subscribed to each of `channels`, its position told, past the check after
    a join."""
    sockets = [Socket() for _ in channels]
    for channel, socket in zip(channels, sockets, strict=True):
        await hub.subscribe(channel, socket)
        assert await hub.position(channel) is not None
    await asyncio.sleep(0.2)
    return sockets


async def test_a_burst_reaches_each_socket_in_one_write_per_max_batch_frames_in_order():
    """Frames delivered in one turn of the event loop (a bulk save, a backlog read off Redis
    at once) go to each socket together at the turn's end, at most MAX_BATCH at a time,
    in order; a frame alone in its turn is a write of its own."""
    hub = Hub(InMemoryChannelLayer(), MemoryPositions().aread)
    one, other = await watched(hub, "burst", "burst")
    frames = [f'{{"n":{n}}}' for n in range(hub_module.MAX_BATCH + 6)]
    for frame in frames:
        hub.deliver("burst", frame)
    assert one.batches == [hub_module.MAX_BATCH]  # the first MAX_BATCH at once
    await asyncio.sleep(0)  # the turn ends
    for socket in (one, other):
        assert socket.frames == frames
        assert socket.batches == [hub_module.MAX_BATCH, 6]
    hub.deliver("burst", "alone")
    await asyncio.sleep(0)
    assert one.frames[-1] == "alone" and one.batches == [hub_module.MAX_BATCH, 6]


async def test_a_frame_held_for_the_turns_end_goes_out_before_a_confirmation_counting_it():
    """A page subscribing to a joined channel in the turn a hint arrived gets the hint
    before its `subscribed` (whose position counts it), not after: a hint not newer than
    the confirmation would make the page refetch for nothing."""
    hub = Hub(InMemoryChannelLayer(), MemoryPositions().aread)
    await watched(hub, "joined")
    hub.deliver("joined", "hint")
    late = Socket()
    await hub.subscribe("joined", late)  # joined already: no wait
    hub.latest("joined", None)  # what the consumer confirms with, then sends `subscribed`
    assert late.frames == ["hint"]


async def test_a_layer_that_loses_messages_is_noticed_and_healing_resyncs_moved_channels(fast):
    store = MemoryPositions()
    layer = FlakyLayer()
    hub = Hub(layer, store.aread, timeout=1)
    socket, quiet = await watched(hub, "moved", "still")
    assert hub.healthy

    layer.losing = True
    await until(lambda: not hub.healthy)
    adds = layer.group_adds
    await until(lambda: layer.group_adds > adds)  # it joins again, in case Redis forgot
    [lost] = store.advance(["moved"])  # published meanwhile, and lost with the layer
    layer.losing = False
    await healed(hub, socket, "moved", lost, quiet)
    assert hub.known["moved"] == Position(lost.epoch, 1)


async def healed(hub: Hub, moved: Socket, channel: str, lost: Position, quiet: Socket) -> None:
    """The hub heals, and tells the page on `channel` where it is now (`lost`, whose hint
    never came), and the page on a channel that did not move nothing."""
    await until(lambda: hub.healthy)
    await until(lambda: moved.frames)
    assert moved.frames == [
        f'{{"type":"resync","channel":"{channel}","position":{{"epoch":"{lost.epoch}","seq":1}}}}'
    ]
    await asyncio.sleep(0.2)
    assert quiet.frames == []  # nothing moved there: no refetch


class ShardedLayer(FlakyLayer):
    """Two shards: a group's messages travel through the shard its name's last digit says
    (as channels_redis places a group by a hash of its name); one shard can lose them all,
    or only the next heartbeat (a Redis restarted between two beats, its subscribers not
    back yet)."""

    def __init__(self) -> None:
        super().__init__()
        self.losing_shard = None
        self.lose_next_beat = False

    @staticmethod
    def shard(group: str) -> int:
        return int(group[-1]) % 2 if group[-1].isdigit() else 0

    async def group_send(self, group, message):
        if message["type"] == hub_module.HEARTBEAT_TYPE and self.lose_next_beat:
            self.lose_next_beat = False
            return
        if self.shard(group) != self.losing_shard:
            await self.inner.group_send(group, message)


def on_shards(layer, channels):
    """`channels` with the shard each one's group travels through."""
    return {c: ShardedLayer.shard(hub_module.group_name(c)) for c in channels}


async def test_a_shard_that_loses_messages_is_noticed_though_another_carries_heartbeats(fast):
    store = MemoryPositions()
    layer = ShardedLayer()
    hub = Hub(layer, store.aread, timeout=1, heartbeat_groups=["beat.0", "beat.1"])
    assert on_shards(layer, ["c1", "c2"]) == {"c1": 1, "c2": 0}  # (group names end so)
    moved, other = await watched(hub, "c1", "c2")
    assert hub.healthy

    layer.losing_shard = 1
    await until(lambda: not hub.healthy)
    [lost] = store.advance(["c1"])  # published meanwhile, lost with shard 1
    layer.losing_shard = None
    await healed(hub, moved, "c1", lost, other)


async def test_one_heartbeat_lost_between_two_that_came_back_is_a_loss_to_heal(fast):
    store = MemoryPositions()
    layer = ShardedLayer()
    hub = Hub(layer, store.aread, timeout=1)
    moved, other = await watched(hub, "moved", "still")
    store.advance(["moved"])  # its hint lost while the path was down, for one heartbeat
    layer.lose_next_beat = True
    await until(lambda: moved.frames)
    assert '"type":"resync"' in moved.frames[0]
    assert other.frames == [] and hub.healthy


async def test_a_store_restarted_between_two_heartbeats_is_checked_once_one_came_back(fast):
    # Redis restarted in less than a heartbeat: no beat was lost, but a hint published
    # before the hub's subscription came back was. The store's new incarnation tells.
    store = MemoryPositions()
    incarnations = ["first"]

    async def ask():
        return list(incarnations)

    hub = Hub(FlakyLayer(), store.aread, timeout=1, incarnations=ask)
    moved, other = await watched(hub, "moved", "still")
    incarnations[0] = "second"
    store.advance(["moved"])
    await until(lambda: moved.frames)
    assert '"type":"resync"' in moved.frames[0]
    await asyncio.sleep(0.2)
    assert other.frames == [] and len(moved.frames) == 1 and hub.healthy


async def test_a_receive_that_fails_is_an_outage_the_hub_heals_from(fast):
    # The core Redis layer's receive raises while Redis is down; the pub/sub layer's does not.
    class FailingReceive(FlakyLayer):
        failures = 0

        async def receive(self, channel):
            while True:
                if self.failures:
                    self.failures -= 1
                    raise ConnectionError("Connection closed by server.")
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(super().receive(channel), 0.02)

    store = MemoryPositions()
    layer = FailingReceive()
    hub = Hub(layer, store.aread, timeout=1)
    [moved] = await watched(hub, "moved")
    layer.failures = 3  # the receives fail, and what is sent meanwhile is lost
    layer.losing = True
    store.advance(["moved"])  # its hint lost meanwhile
    await until(lambda: not hub.healthy)
    layer.losing = False
    await until(lambda: hub.healthy)
    await until(lambda: moved.frames)
    assert '"type":"resync"' in moved.frames[0]


async def test_a_busy_event_loop_is_not_a_broken_layer(fast):
    hub = Hub(FlakyLayer(), MemoryPositions().aread, timeout=1)
    await hub.subscribe("a", Socket())
    await asyncio.sleep(0.2)
    for _ in range(3):
        time.sleep(0.3)  # the loop is busy for six heartbeats (a connect storm, a GC pause)
        await asyncio.sleep(0.06)
    assert hub.healthy


async def test_joins_wait_their_turn_without_their_wait_counting_against_the_deadline():
    class SlowLayer(InMemoryChannelLayer):
        async def group_add(self, group, channel):
            await asyncio.sleep(0.01)  # each join takes a while; the layer serialises them
            await super().group_add(group, channel)

    hub = Hub(SlowLayer(), MemoryPositions().aread, timeout=0.2)
    sockets = [Socket() for _ in range(60)]  # 60 x 10 ms: far past one deadline in total
    await asyncio.gather(*(hub.subscribe(f"c{n}", s) for n, s in enumerate(sockets)))
    assert hub.joined == {f"c{n}" for n in range(60)}


async def test_a_layer_that_hangs_fails_every_waiting_join_at_once():
    class HungLayer(InMemoryChannelLayer):
        async def group_add(self, group, channel):
            await asyncio.sleep(60)

    hub = Hub(HungLayer(), MemoryPositions().aread, timeout=0.1)
    started = time.monotonic()
    results = await asyncio.gather(
        *(hub.subscribe(f"c{n}", Socket()) for n in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, TimeoutError) for r in results)
    assert time.monotonic() - started < 1  # one deadline, not twenty
    assert hub.sockets == {} and hub.joined == set()


async def test_a_hub_whose_process_exits_does_not_leave_its_groups_one_by_one():
    # A draining process closes thousands of sockets; leaving each channel's group would
    # cost a Redis round trip each, for nothing: the process exits and Redis drops its
    # subscriptions with its connection.
    layer = FlakyLayer()
    discards = []
    layer.group_discard = lambda group, channel: discards.append(group) or asyncio.sleep(0)
    hub = Hub(layer)
    sockets = [Socket() for _ in range(3)]
    for n, socket in enumerate(sockets):
        await hub.subscribe(f"exit-{n}", socket)
    hub.drop(sockets[0], ["exit-0"])
    await asyncio.sleep(0.05)
    assert len(discards) == 1  # an ordinary leave
    hub.exiting = True
    for n, socket in enumerate(sockets[1:], 1):
        hub.drop(socket, [f"exit-{n}"])
    await asyncio.sleep(0.05)
    assert len(discards) == 1 and hub.sockets == {}


async def test_a_position_read_overtaken_by_a_hint_does_not_take_the_page_back(fast):
    # Found by tests/system/test_rolling_restart.py: a page subscribed, the hub read the
    # channel's position (nothing published: START), the channel's first hint was published
    # and delivered while the read was on its way back, and the `subscribed` frame then
    # said START: the page went back behind a hint it had been sent.
    store = MemoryPositions()
    answer = asyncio.Event()

    async def slow_read(channels):
        before = await store.aread(channels)
        await answer.wait()
        return before

    layer = InMemoryChannelLayer()
    hub = Hub(layer, slow_read, timeout=1)
    socket = Socket()
    await hub.subscribe("first", socket)
    reading = asyncio.ensure_future(hub.position("first"))
    await asyncio.sleep(0.01)
    [published] = store.advance(["first"])
    await layer.group_send(group_name("first"), frame_event("first", "hint", published))
    await until(lambda: socket.frames == ["hint"])
    answer.set()
    assert await reading == published
    await asyncio.sleep(0.2)  # past the check after joining: nothing more to tell the page
    assert socket.frames == ["hint"]


async def test_each_join_is_checked_again_its_own_while_after(monkeypatch):
    # A channel joined just before an earlier join's check ran was checked with it, before
    # a hint that raced its subscription could be in the store.
    monkeypatch.setattr(hub_module, "RECHECK_SECONDS", 0.3)
    store, reads = MemoryPositions(), []

    async def read(channels):
        reads.append((list(channels), time.monotonic()))
        return await store.aread(channels)

    hub = Hub(InMemoryChannelLayer(), read, timeout=1)
    await hub.subscribe("early", Socket())
    await hub.position("early")
    await asyncio.sleep(0.25)
    await hub.subscribe("late", Socket())
    joined = time.monotonic()
    await hub.position("late")  # the read for its `subscribed` frame
    await asyncio.sleep(0.5)
    read_for_frame, check = [at for channels, at in reads if "late" in channels][:2]
    assert check - joined >= 0.3 * 0.9


class RecordingLayer(InMemoryChannelLayer):
    """Joins take a while, as Redis round trips do; records the groups joined, in order, and
    the most it was in at once."""

    def __init__(self) -> None:
        super().__init__()
        self.added: list[str] = []
        self.inside: set[str] = set()
        self.most = 0

    async def group_add(self, group, channel):
        await asyncio.sleep(0.001)
        await super().group_add(group, channel)
        if not group.startswith("pushgateway.heartbeat"):
            self.added.append(group)
            self.inside.add(group)
            self.most = max(self.most, len(self.inside))

    async def group_discard(self, group, channel):
        await super().group_discard(group, channel)
        self.inside.discard(group)


async def test_joins_of_one_client_do_not_hold_up_another_clients():
    layer = RecordingLayer()
    hub = Hub(layer, MemoryPositions().aread)
    flood = [
        asyncio.ensure_future(hub.subscribe(f"flood-{n}", Socket(), "attacker")) for n in range(50)
    ]
    await asyncio.sleep(0.005)  # the flood's joins are queued and on their way
    queued = len(layer.added)
    await hub.subscribe("page", Socket(), "page")
    # The page's join came after at most one more of the attacker's (joins are made in
    # turn per client), not after the whole queue.
    assert layer.added.index(group_name("page")) <= queued + 1
    assert len(layer.added) < 10
    await asyncio.gather(*flood)
    assert hub.joined == {"page", *(f"flood-{n}" for n in range(50))}


async def test_the_channels_joined_never_pass_max_channels_whatever_the_churn():
    layer = RecordingLayer()
    hub = Hub(layer, MemoryPositions().aread, max_channels=5)
    rng = random.Random(16)
    sockets = [Socket() for _ in range(8)]
    refused = 0

    async def subscriber(socket):
        nonlocal refused
        for _ in range(40):
            channel = f"c{rng.randrange(20)}"
            if rng.random() < 0.4:
                hub.drop(socket, [channel])
                continue
            try:
                await hub.subscribe(channel, socket, client=rng.choice("abc"))
            except hub_module.ChannelCapReached:
                refused += 1

    await asyncio.gather(*(subscriber(s) for s in sockets))
    await until(lambda: not hub._pending)
    assert refused > 0 and layer.most == 5  # it reached the cap, never more
    assert len(hub.joined) <= 5 and layer.inside == set(map(group_name, hub.joined))


async def test_the_periodic_check_and_the_wait_for_joins_are_timed(monkeypatch):
    from prometheus_client import CollectorRegistry

    from pushgateway.metrics import Metrics

    monkeypatch.setattr(hub_module, "VERIFY_SECONDS", 0.05)
    registry = CollectorRegistry()
    hub = Hub(InMemoryChannelLayer(), MemoryPositions().aread, metrics=Metrics(registry))
    await watched(hub, "timed-1", "timed-2")
    assert registry.get_sample_value("pushgateway_join_wait_seconds_count") == 2
    assert registry.get_sample_value("pushgateway_channels_joined") == 2
    await until(lambda: registry.get_sample_value("pushgateway_verify_seconds_count") >= 1)
