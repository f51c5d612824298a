"""The hub's healing, in-process: a layer path that breaks and comes back, a busy loop."""

import asyncio
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

    def push(self, message):
        self.frames.append(message["text"])


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(hub_module, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(hub_module, "RECHECK_SECONDS", 0.05)


async def until(condition, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_layer_that_loses_messages_is_noticed_and_healing_resyncs_moved_channels(fast):
    store = MemoryPositions()
    layer = FlakyLayer()
    hub = Hub(layer, store.aread, timeout=1)
    socket, quiet = Socket(), Socket()
    await hub.subscribe("moved", socket)
    await hub.subscribe("still", quiet)
    assert await hub.position("moved") is not None and await hub.position("still") is not None
    await asyncio.sleep(0.2)
    assert hub.healthy

    layer.losing = True
    await until(lambda: not hub.healthy)
    adds = layer.group_adds
    await until(lambda: layer.group_adds > adds)  # it joins again, in case Redis forgot
    [lost] = store.advance(["moved"])  # published meanwhile, and lost with the layer
    layer.losing = False
    await until(lambda: hub.healthy)
    await until(lambda: socket.frames)
    assert socket.frames == [
        f'{{"type":"resync","channel":"moved","position":{{"epoch":"{lost.epoch}","seq":1}}}}'
    ]
    await asyncio.sleep(0.2)
    assert quiet.frames == []  # nothing moved there: no refetch
    assert hub.known["moved"] == Position(lost.epoch, 1)


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
