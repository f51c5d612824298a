"""The per-process hub: one channel-layer group membership per channel, local fan-out.

Consumers never join channel-layer groups themselves: the first local subscriber to a
channel makes the hub join its group once for the process, the last one leaving makes it
leave, and each message arrives once per process, its frame serialised once for every
local socket. The hub also keeps pages from going stale: it compares the last position it
delivered on each channel with the position store (when its layer path heals or lost a
heartbeat, when the store became another Redis incarnation, just after a join, every
VERIFY_SECONDS) and sends `resync` where the store is ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from channels.layers import InMemoryChannelLayer

from pushgateway import metrics
from pushgateway.backends import get_backend
from pushgateway.layer import EVENT_TYPE, group_name
from pushgateway.protocol import Position, has_news, is_private, resync_frame

from .frames import prepared_batch, prepared_send

logger = logging.getLogger("pushgateway.hub")

HEARTBEAT_TYPE = "pushgateway.heartbeat"
# A heartbeat goes through each heartbeat group (one per shard of the layer) every
# HEARTBEAT_SECONDS. The path is broken when a send fails, or when MISSING_BEATS heartbeats
# in a row were sent through a group and none came back (counted, not timed, so an event
# loop busy for a while is not mistaken for a broken layer). A heartbeat that comes back
# after an earlier one never did (a Redis restarted between two beats) means the path lost
# messages too: positions are checked as after an outage. With each round the hub also asks
# the position store which Redis incarnation each shard is: a restart or failover quicker
# than a heartbeat loses hints without losing a beat, so a new incarnation has positions
# checked as soon as a heartbeat sent after it came back (the subscriptions are back).
HEARTBEAT_SECONDS = 1.0
MISSING_BEATS = 2
# After a join, the position read may have raced the subscription on its way to Redis:
# check again this much later. (A resync that overtakes a hint on its way is harmless: the
# browser module waits half a second for the hint before it refetches.)
RECHECK_SECONDS = 0.5
VERIFY_SECONDS = 15.0
# Channels' in-memory and core Redis layers forget group members added more than
# group_expiry (default 24 h) ago; the hub renews its memberships well before that.
RENEW_SECONDS = 3600
# A burst of frames on one channel (a bulk save, a backlog read off Redis at once) reaches
# each socket in one write: frames received in one turn of the event loop are written at
# its end, at most this many together.
MAX_BATCH = 64


class ChannelCapReached(Exception):
    """The process has joined as many channels as OPTIONS["MAX_CHANNELS"] allows."""


class Socket(Protocol):
    def push(self, message: dict) -> None:
        """Send an ASGI message without waiting (see PushGatewayConsumer.push)."""

    def push_many(self, batch: Iterable[dict]) -> None:
        """Send several, in order, without waiting (see PushGatewayConsumer.push_many)."""

    def recheck_tokens(self) -> None:
        """End private subscriptions whose tokens no longer verify (optional)."""


class _Beats:
    """The heartbeats of one heartbeat group: how many were sent, the last that came back."""

    __slots__ = ("back", "broken", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.back = 0
        self.broken = False


class Hub:
    def __init__(
        self,
        layer,
        positions=None,
        timeout: float = 5.0,
        metrics=None,
        heartbeat_groups: Sequence[str] = (),
        incarnations: Callable[[], Awaitable[list[str]]] | None = None,
        max_channels: int | None = None,
    ) -> None:
        """`positions` reads stream positions (a backend's read_positions/aread_positions);
        `timeout` bounds every channel-layer call; `metrics` counts (pushgateway.metrics);
        `heartbeat_groups` are the groups heartbeats go through, at least one through each
        shard of the layer (default: one group); `incarnations` tells which Redis
        incarnation each shard of the position store is (RedisPositions.aincarnations);
        `max_channels` caps the groups joined at once (OPTIONS["MAX_CHANNELS"])."""
        self.layer = layer
        self.max_channels = max_channels
        self.incarnations = incarnations
        self._incarnations: list[str] | None = None
        self._check_after: dict[str, int] = {}  # group -> the beat that must come back first
        self.metrics = metrics
        self.positions = positions
        self.timeout = timeout
        self.sockets: dict[str, set[Socket]] = {}
        self.joined: set[str] = set()
        self.known: dict[str, Position] = {}  # last position delivered, per joined channel
        self.healthy = True
        #: The process is draining to exit (channels_app.drain): channels whose last socket
        #: leaves keep their groups, which Redis drops with the process's connection.
        self.exiting = False
        self.channel_name: str | None = None
        groups = heartbeat_groups or [f"pushgateway.heartbeat.{uuid.uuid4().hex}"]
        self._beats = {group: _Beats() for group in groups}
        # Channels whose membership to reconcile, in order, per client that asked (None:
        # leaves and the hub's own): served in turn, one channel of each client at a time.
        self._pending: dict[object, dict[str, None]] = {}
        self._joins: dict[str, asyncio.Future] = {}  # joins awaited by subscribers
        self._reconciler: asyncio.Task | None = None
        self._reads: dict[str, asyncio.Future] = {}
        self._to_verify: dict[str, float] = {}  # channel -> when to check it, in that order
        self._rechecker: asyncio.Task | None = None
        self._tasks: dict[str, asyncio.Task] = {}
        self._unwritten: dict[str, list[str]] = {}  # channel -> frames for this turn's end
        self._writing: asyncio.Handle | None = None
        self._background: set[asyncio.Task] = set()
        self._rounds = 0  # heartbeat rounds sent through every group
        self._rejoined_at = 0  # the round after which the hub last joined all again

    # Subscriptions

    async def subscribe(self, channel: str, socket: Socket, client: object = None) -> None:
        """Deliver `channel`'s messages to `socket`; returns once the group is joined, and
        raises if it cannot be joined now (ChannelCapReached: the process is at
        `max_channels`). Joins are made in turn per `client` (the socket's address, say):
        one client's flood of joins delays another's by one join at a time, not all."""
        if channel not in self.sockets and self.full():
            raise ChannelCapReached(channel)
        self.sockets.setdefault(channel, set()).add(socket)
        if channel in self.joined:
            return
        future = self._joins.get(channel)
        if future is None:
            future = self._joins[channel] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            self._reconcile_soon(channel, client)
        started = time.monotonic()
        try:
            await asyncio.shield(future)
        except BaseException:
            self.drop(socket, [channel])
            raise
        if self.metrics:
            self.metrics.join_wait.observe(time.monotonic() - started)

    def serves(self, channel: str) -> bool:
        """Whether a socket here is on `channel` (joined, or its join on the way): one more
        costs the layer nothing."""
        return channel in self.sockets

    def full(self) -> bool:
        """Whether one more channel would take the process past `max_channels` (those
        joined, or wanted by a socket and on their way)."""
        if self.max_channels is None:
            return False
        return max(len(self.sockets), len(self.joined)) >= self.max_channels

    async def unsubscribe(self, channel: str, socket: Socket) -> None:
        """Stop delivering `channel` to `socket`; returns once the layer is in step."""
        self.drop(socket, [channel])
        if self._reconciler is not None:
            await asyncio.shield(self._reconciler)

    def drop(self, socket: Socket, channels: Iterable[str]) -> None:
        """Forget a socket on `channels` at once; the layer is left in the background, so a
        cancelled consumer cannot leave the socket behind in the hub."""
        for channel in channels:
            sockets = self.sockets.get(channel)
            if sockets is not None:
                sockets.discard(socket)
                if not sockets:
                    del self.sockets[channel]
                    if not self.exiting:
                        self._reconcile_soon(channel)

    def _reconcile_soon(self, channel: str, client: object = None) -> None:
        self._pending.setdefault(client, {})[channel] = None
        if self._reconciler is None or self._reconciler.done():
            self._reconciler = asyncio.create_task(self._reconcile())

    def _next_pending(self) -> tuple[object, str]:
        """The client whose turn it is, and its oldest channel to reconcile (taken off)."""
        client, queue = next(iter(self._pending.items()))
        channel = next(iter(queue))
        del queue[channel]
        if not queue:
            del self._pending[client]
        return client, channel

    async def _reconcile(self) -> None:
        # One worker makes the layer match the local sockets, one channel at a time, as they
        # are when it gets to each: a join racing a leave always ends in the right state
        # (a channel pending for two clients is looked at twice, the second time for
        # nothing). A storm of joins waits its turn here (channels_redis serialises them
        # anyway), and only the layer call itself has the deadline. Clients take turns: after
        # each of its channels a client goes behind every other one waiting, those that
        # came meanwhile included.
        while self._pending:
            client, channel = self._next_pending()
            if await self._match_layer(channel):
                future = self._joins.pop(channel, None)
                if future is not None and not future.done():
                    future.set_result(None)
            queue = self._pending.pop(client, None)
            if queue:
                self._pending[client] = queue

    async def _match_layer(self, channel: str) -> bool:
        """Join or leave `channel`'s group as its local sockets want; whether that worked."""
        want, have = channel in self.sockets, channel in self.joined
        if want and not have:
            if self.max_channels is not None and len(self.joined) >= self.max_channels:
                # Channels left by now but whose leave is still pending keep the process at
                # the cap: this join fails (the page asks again later) rather than pass it.
                future = self._joins.pop(channel, None)
                if future is not None and not future.done():
                    future.set_exception(ChannelCapReached(channel))
                return False
            try:
                await self._join(channel)
            except Exception as exc:
                # The layer is failing: every join waiting now fails at once, rather than
                # each after its own deadline.
                joins, self._joins = self._joins, {}
                for future in joins.values():
                    if not future.done():
                        future.set_exception(exc)
                return False
        elif have and not want:
            try:
                await self._leave(channel)
            except Exception as exc:
                logger.warning("pushgateway hub: leaving %r failed: %r", channel, exc)
                return False
        return True

    async def _join(self, channel: str) -> None:
        await self._start()
        await self._layer_call(self.layer.group_add, group_name(channel))
        self.joined.add(channel)
        if self.metrics:
            self.metrics.channels.inc()
        self._verify_soon(channel)

    async def _leave(self, channel: str) -> None:
        self.joined.discard(channel)
        if self.metrics:
            self.metrics.channels.dec()
        self.known.pop(channel, None)
        await self._layer_call(self.layer.group_discard, group_name(channel))

    async def _layer_call(self, method, group: str) -> None:
        await asyncio.wait_for(method(group, self.channel_name), self.timeout)

    # Positions

    async def position(self, channel: str) -> Position | None:
        """The current position of a joined channel (None if it cannot be read now).

        Joined and healthy, the hub knows it from what it delivered; otherwise it reads the
        store, batching the reads of everything that asks in the same moment (a reconnect
        storm costs one round trip per loop turn, not one per socket)."""
        if self.healthy and channel in self.known:
            return self.known[channel]
        future = self._reads.get(channel)
        if future is None:
            future = self._reads[channel] = asyncio.get_running_loop().create_future()
            if len(self._reads) == 1:
                self._spawn(self._read_batch())
        return await asyncio.shield(future)

    def latest(self, channel: str, position: Position | None) -> Position | None:
        """What to confirm a subscription with now that `position()` gave `position`: the
        hub's own, when it moved on since (a hint or resync it delivered meanwhile went out
        on the socket first, and the confirmation must not say less). Frames held for the
        end of this turn go out now, so none the confirmation counts comes after it."""
        frames = self._unwritten.pop(channel, None)
        if frames:
            self._write(channel, frames)
        return self.known.get(channel, position)

    async def _read_batch(self) -> None:
        await asyncio.sleep(0)  # let the other subscribes of this moment queue up
        reads, self._reads = self._reads, {}
        found = await self._read_fresh(reads)
        for channel, future in reads.items():
            position = found.get(channel)
            if position is not None and channel in self.joined:
                self._advance(channel, position)
            if not future.done():
                future.set_result(self.known.get(channel, position))

    async def _read(self, channels: Iterable[str]) -> dict[str, Position | None]:
        if self.positions is None:
            return {}
        return await self.positions(list(channels))

    async def _read_fresh(self, channels: Iterable[str]) -> dict[str, Position | None]:
        """The store's positions of `channels`, but for those a hint delivered while the
        read was on its way moved on: that hint is newer than what the read found (a
        channel's first hint even starts its epoch after the read saw nothing)."""
        before = {channel: self.known.get(channel) for channel in channels}
        found = await self._read(before)
        return {c: p for c, p in found.items() if self.known.get(c) == before.get(c)}

    def _advance(self, channel: str, position: Position) -> None:
        if has_news(self.known.get(channel), position):
            self.known[channel] = position

    def _verify_soon(self, *channels: str) -> None:
        """Check `channels` against the store RECHECK_SECONDS from now, each on its own
        time (a join just before another's check is not checked with it, too early)."""
        due = asyncio.get_running_loop().time() + RECHECK_SECONDS
        for channel in channels:
            self._to_verify.pop(channel, None)
            self._to_verify[channel] = due
        if self._rechecker is None or self._rechecker.done():
            self._rechecker = asyncio.create_task(self._recheck())

    async def _recheck(self) -> None:
        loop = asyncio.get_running_loop()
        while self._to_verify:
            await asyncio.sleep(max(0.0, next(iter(self._to_verify.values())) - loop.time()))
            due = []
            for channel, at in self._to_verify.items():  # in the order they are due
                if at > loop.time():
                    break
                due.append(channel)
            for channel in due:
                del self._to_verify[channel]
            try:
                await self.verify(due)
            except Exception:
                logger.exception("pushgateway hub: checking positions after joining failed")

    async def verify(self, channels: Iterable[str], cause: str = "checked") -> int:
        """Send `resync` where the store is ahead of what this hub delivered; returns how
        many channels that was. `cause` labels the resync metric."""
        # A channel with no known position has told no page a position yet (or could not):
        # its `subscribed` frame is what tells them.
        stored = await self._read_fresh([c for c in channels if c in self.known])
        resynced = 0
        for channel, position in stored.items():
            if channel in self.joined and has_news(self.known.get(channel), position):
                self.known[channel] = position
                self.deliver(channel, resync_frame(channel, position))
                resynced += 1
        if resynced:
            logger.info("pushgateway hub: resync sent on %d channel(s)", resynced)
            if self.metrics:
                self.metrics.resyncs.labels(cause).inc(resynced)
        return resynced

    # The layer

    async def _start(self) -> None:
        if self.channel_name is None:
            new_channel = self.layer.new_channel("pushgateway.hub.")
            self.channel_name = await asyncio.wait_for(new_channel, self.timeout)
        self._task("receive", self._receive_forever)
        self._task("renew", self._renew_forever)
        self._task("verify", self._verify_forever)
        self._task("tokens", self._tokens_forever)
        if not isinstance(self.layer, InMemoryChannelLayer):  # that one cannot break
            self._task("heartbeat", self._heartbeat_forever)

    def _task(self, name: str, function) -> None:
        task = self._tasks.get(name)
        if task is None or task.done():
            self._tasks[name] = asyncio.create_task(function())

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _receive_forever(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                if self.healthy:
                    logger.exception("pushgateway hub: channel layer receive failed; retrying")
                self._broken()
                await asyncio.sleep(0.2)
                continue
            kind = event.get("type")
            if kind == EVENT_TYPE:
                channel = event["channel"]
                if channel in self.joined and "seq" in event:
                    self._advance(channel, Position(event["epoch"], event["seq"]))
                self.deliver(channel, event["frame"])
                if self.metrics and "t" in event:
                    self.metrics.lag.observe(time.time() - event["t"])
            elif kind == HEARTBEAT_TYPE:
                self._beat_back(event.get("group"), event.get("n", 0))

    def _beat_back(self, group: str | None, n: int) -> None:
        """Heartbeat `n` of `group` came back through the layer."""
        beats = self._beats.get(group) if group is not None else None
        if beats is None:
            return
        lost = n > beats.back + 1  # an earlier one never came: the path lost messages
        beats.back = max(beats.back, n)
        beats.broken = False
        if n >= self._check_after.get(group, n + 1):
            del self._check_after[group]
            lost = lost or not self._check_after  # the store's new incarnation: check once
        if not self.healthy and not any(b.broken for b in self._beats.values()):
            self.healthy = True
            logger.warning("pushgateway hub: channel layer is back; checking positions")
        elif not (self.healthy and lost):
            return
        elif self.metrics:
            self.metrics.layer_outages.inc()
        self._spawn(self.verify(tuple(self.joined), cause="healed"))

    async def _heartbeat_forever(self) -> None:
        for group in self._beats:
            with contextlib.suppress(Exception):
                await self._layer_call(self.layer.group_add, group)
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await self._watch_store()
            if not await self._beat() or self.healthy or self._rounds <= self._rejoined_at:
                continue
            # The layer takes messages again, but the hub's may not come back: a layer that
            # keeps memberships in Redis lost them. Join everything again (once a round at
            # most) and look at once whether that was it.
            self._rejoined_at = self._rounds
            await self._rejoin()
            await self._beat()

    async def _watch_store(self) -> None:
        """Ask which incarnation each shard of the position store is; a new one restarted or
        failed over: check positions once the next heartbeat of every group came back."""
        if self.incarnations is None:
            return
        try:
            # Never holding the heartbeat up for long: an answer missed is asked again.
            deadline = min(self.timeout, HEARTBEAT_SECONDS)
            found = await asyncio.wait_for(self.incarnations(), deadline)
        except Exception:  # down: the heartbeat notices what matters
            return
        known, self._incarnations = self._incarnations, found
        if known is not None and known != found:
            logger.warning("pushgateway hub: the position store restarted or failed over")
            self._check_after = {group: beats.sent + 1 for group, beats in self._beats.items()}

    async def _beat(self) -> bool:
        """Send one heartbeat through each group; whether the layer took them all. A group
        whose send fails, or whose last MISSING_BEATS never came back, is broken."""
        took = True
        for group, beats in self._beats.items():
            beat = {"type": HEARTBEAT_TYPE, "group": group, "n": beats.sent + 1}
            try:
                await asyncio.wait_for(self.layer.group_send(group, beat), self.timeout)
            except Exception:
                took = False
                self._broken(beats)
                continue
            beats.sent += 1
            if beats.sent - beats.back >= MISSING_BEATS:
                self._broken(beats)
        self._rounds += took
        return took

    def _broken(self, beats: _Beats | None = None) -> None:
        """The layer path failed: its receive (no `beats`), or the heartbeats of `beats`."""
        if beats is not None:
            beats.broken = True
        if self.healthy:
            self.healthy = False
            if self.metrics:
                self.metrics.layer_outages.inc()
            logger.warning("pushgateway hub: lost the channel layer; pages resync when it is back")

    async def _rejoin(self) -> None:
        for group in (*self._beats, *map(group_name, tuple(self.joined))):
            try:
                await self._layer_call(self.layer.group_add, group)
            except Exception:
                return

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            for channel in tuple(self.joined):
                try:
                    await self._layer_call(self.layer.group_add, group_name(channel))
                except Exception:
                    logger.exception("pushgateway hub: renewing %r failed", channel)

    async def _verify_forever(self) -> None:
        while True:
            await asyncio.sleep(VERIFY_SECONDS)
            if self.joined and self.healthy:
                started = time.monotonic()
                try:
                    await self.verify(tuple(self.joined))
                except Exception:
                    logger.exception("pushgateway hub: checking positions failed")
                if self.metrics:
                    self.metrics.verify.observe(time.monotonic() - started)

    # Tokens: a live private subscription ends when its token expires or its key is dropped.

    async def _tokens_forever(self) -> None:
        while True:
            await asyncio.sleep(VERIFY_SECONDS)
            await self.recheck_tokens()

    async def recheck_tokens(self) -> int:
        """Have every socket on a private channel end the subscriptions whose tokens no longer
        verify (each is answered `forbidden`); returns how many sockets were asked."""
        sockets = {s for c, on in self.sockets.items() if is_private(c) for s in on}
        for n, socket in enumerate(sockets, 1):
            try:
                recheck = getattr(socket, "recheck_tokens", None)
                if recheck is not None:
                    recheck()
            except Exception:
                logger.exception("pushgateway hub: checking one socket's tokens failed")
            if n % 256 == 0:
                await asyncio.sleep(0)  # an HMAC each: let the sockets' frames through
        return len(sockets)

    def deliver(self, channel: str, frame: str) -> None:
        """Write `frame` to every local socket on `channel` at the end of this turn of the
        event loop, with the frames that follow it on the channel in the same turn: a burst
        costs a socket one write, not one per frame. No socket is waited for."""
        frames = self._unwritten.get(channel)
        if frames is None:
            frames = self._unwritten[channel] = []
            if self._writing is None:
                self._writing = asyncio.get_running_loop().call_soon(self._write_unwritten)
        frames.append(frame)
        if len(frames) >= MAX_BATCH:
            self._write(channel, self._unwritten.pop(channel))

    def _write_unwritten(self) -> None:
        self._writing = None
        unwritten, self._unwritten = self._unwritten, {}
        for channel, frames in unwritten.items():
            self._write(channel, frames)

    def _write(self, channel: str, frames: list[str]) -> None:
        """`frames` to every socket on `channel` now: one message for all of them, its
        bytes built once (channels_app.frames)."""
        sockets = tuple(self.sockets.get(channel, ()))
        one = len(frames) == 1
        message = prepared_send(frames[0]) if one else prepared_batch(frames)
        for socket in sockets:
            try:
                socket.push(message) if one else socket.push_many(message)
            except Exception:
                logger.exception("pushgateway hub: send to one socket failed")
        if self.metrics:
            self.metrics.frames.inc(len(sockets) * len(frames))


def _retrieve(future: asyncio.Future) -> None:
    # A failed join nobody waits for any more is not an error to report at exit.
    if not future.cancelled():
        future.exception()


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def running_hub() -> Hub | None:
    """The hub of the running event loop, if it has one (get_hub makes one)."""
    return _hubs.get(asyncio.get_running_loop())


def get_hub() -> Hub | None:
    """The hub of the running event loop (one per server process), on the backend's layer;
    None when the backend publishes elsewhere (Fanout), so no hint would ever arrive here."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        backend = get_backend()
        layer = getattr(backend, "layer", None)
        if layer is None:
            return None
        for old in [old for old in _hubs if old.is_closed()]:
            del _hubs[old]
        hub = _hubs[loop] = backend_hub(backend)
        backend.serving = True
    return hub


def backend_hub(backend) -> Hub:
    """A hub on `backend`'s layer, with its positions, its timeout and this process's
    metrics; a heartbeat through each shard of the layer and the store's incarnations
    watched, where the backend knows them."""
    groups = getattr(backend, "heartbeat_groups", None)
    base = f"pushgateway.heartbeat.{uuid.uuid4().hex}"
    return Hub(
        backend.layer,
        backend.aread_positions,
        backend.timeout,
        metrics.get(),
        heartbeat_groups=groups(base) if groups else (),
        incarnations=getattr(backend.positions, "aincarnations", None),
        max_channels=backend.limits.MAX_CHANNELS,
    )
