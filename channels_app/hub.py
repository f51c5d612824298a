"""The per-process hub: one channel-layer group membership per channel, local fan-out.

Consumers never join channel-layer groups themselves. The first local subscriber to a
channel makes the hub join that channel's group once for the whole process; the last one
leaving makes it leave. Each message arrives once per process with its frame already
serialised, and the hub writes that same string to every local socket.

The hub also keeps the pages it serves from going stale. It knows the last stream position
it delivered on each channel, and compares it with the position store:
- when its path through the channel layer heals (a heartbeat it sends itself through the
  layer comes back after going missing: Redis restarted, the network dropped), and on the
  core Redis layer it first joins its groups again (a Redis restart forgets them);
- a moment after it joins a channel (a hint published while the join was on its way);
- every VERIFY_SECONDS (a hint the layer dropped on the way).
Where the store is ahead, it sends the channel's sockets a `resync` with the position; a page
that already has that position ignores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from typing import Protocol

from channels.layers import InMemoryChannelLayer

from pushgateway.backends import get_backend
from pushgateway.backends.channels import EVENT_TYPE
from pushgateway.protocol import Position, group_name, has_news, resync_frame

logger = logging.getLogger("pushgateway.hub")

HEARTBEAT_TYPE = "pushgateway.heartbeat"
# A heartbeat goes through the layer every HEARTBEAT_SECONDS; missing for MISSING_BEATS of
# them, the path is taken as broken.
HEARTBEAT_SECONDS = 1.0
MISSING_BEATS = 2.5
# How long a position the store is ahead by may wait for the hint that explains it.
GRACE_SECONDS = 1.0
VERIFY_SECONDS = 15.0
# Channels' in-memory and core Redis layers forget group members added more than
# group_expiry (default 24 h) ago; the hub renews its memberships well before that.
RENEW_SECONDS = 3600


class Socket(Protocol):
    async def send_frame(self, text: str) -> None: ...


class Hub:
    def __init__(self, layer, positions=None, timeout: float = 5.0) -> None:
        """`positions` reads stream positions (a backend's read_positions/aread_positions);
        `timeout` bounds every channel-layer call."""
        self.layer = layer
        self.positions = positions
        self.timeout = timeout
        self.sockets: dict[str, set[Socket]] = {}
        self.joined: set[str] = set()
        self.known: dict[str, Position] = {}  # last position delivered, per joined channel
        self.healthy = True
        self.channel_name: str | None = None
        self.heartbeat_group = f"pushgateway.heartbeat.{uuid.uuid4().hex}"
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, users
        self._reads: dict[str, asyncio.Future] = {}
        self._to_verify: set[str] = set()
        self._tasks: dict[str, asyncio.Task] = {}
        self._background: set[asyncio.Task] = set()
        self._last_beat = 0.0
        self._last_rejoin = 0.0

    # Subscriptions

    async def subscribe(self, channel: str, socket: Socket) -> None:
        """Deliver `channel`'s messages to `socket`; returns once the group is joined."""
        self.sockets.setdefault(channel, set()).add(socket)
        if channel not in self.joined:
            try:
                await self._sync_membership(channel)
            except BaseException:
                self._forget(channel, socket)
                raise

    async def unsubscribe(self, channel: str, socket: Socket) -> None:
        self._forget(channel, socket)
        if channel not in self.sockets:  # a join may still be in flight: sync either way
            await self._sync_membership(channel)

    def drop(self, socket: Socket, channels: Iterable[str]) -> None:
        """Forget a closed socket at once; the layer is left in the background, so a
        cancelled consumer cannot leave the socket behind in the hub."""
        for channel in channels:
            self._forget(channel, socket)
            if channel not in self.sockets:
                self._spawn(self._leave(channel))

    async def _leave(self, channel: str) -> None:
        try:
            await self._sync_membership(channel)
        except Exception:  # the layer is down; the membership goes with the process
            logger.warning("pushgateway hub: leaving %r failed", channel, exc_info=True)

    def _forget(self, channel: str, socket: Socket) -> None:
        sockets = self.sockets.get(channel)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self.sockets[channel]

    async def _sync_membership(self, channel: str) -> None:
        # Joins and leaves of one channel run one at a time, and each makes the layer
        # match the local sockets as they are when it runs, so a subscribe racing an
        # unsubscribe always ends in the right state.
        lock, users = self._locks.get(channel) or (asyncio.Lock(), 0)
        self._locks[channel] = (lock, users + 1)
        try:
            async with lock:
                want, have = channel in self.sockets, channel in self.joined
                if want and not have:
                    await self._start()
                    await self._layer_call(self.layer.group_add, group_name(channel))
                    self.joined.add(channel)
                    self._verify_soon(channel)
                elif have and not want:
                    self.joined.discard(channel)
                    self.known.pop(channel, None)
                    await self._layer_call(self.layer.group_discard, group_name(channel))
        finally:
            lock, users = self._locks[channel]
            if users == 1:
                del self._locks[channel]
            else:
                self._locks[channel] = (lock, users - 1)

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

    async def _read_batch(self) -> None:
        await asyncio.sleep(0)  # let the other subscribes of this moment queue up
        reads, self._reads = self._reads, {}
        found = await self._read(reads)
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

    def _advance(self, channel: str, position: Position) -> None:
        if has_news(self.known.get(channel), position):
            self.known[channel] = position

    def _verify_soon(self, *channels: str) -> None:
        if not self._to_verify:
            self._spawn(self._verify_after_grace())
        self._to_verify.update(channels)

    async def _verify_after_grace(self) -> None:
        await asyncio.sleep(GRACE_SECONDS)
        channels, self._to_verify = self._to_verify, set()
        await self.verify(channels)

    async def verify(self, channels: Iterable[str]) -> int:
        """Send `resync` where the store is ahead of what this hub delivered; returns how
        many channels that was."""
        stored = await self._read(c for c in channels if c in self.joined)
        ahead = {c: p for c, p in stored.items() if has_news(self.known.get(c), p)}
        if not ahead:
            return 0
        await asyncio.sleep(GRACE_SECONDS)  # a hint on its way still arrives as usual
        resynced = 0
        for channel, position in ahead.items():
            if channel in self.joined and has_news(self.known.get(channel), position):
                self.known[channel] = position
                await self.deliver(channel, resync_frame(channel, position))
                resynced += 1
        if resynced:
            logger.info("pushgateway hub: resync sent on %d channel(s)", resynced)
        return resynced

    # The layer

    async def _start(self) -> None:
        if self.channel_name is None:
            new_channel = self.layer.new_channel("pushgateway.hub.")
            self.channel_name = await asyncio.wait_for(new_channel, self.timeout)
        self._task("receive", self._receive_forever)
        self._task("renew", self._renew_forever)
        self._task("verify", self._verify_forever)
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
                logger.exception("pushgateway hub: channel layer receive failed; retrying")
                self._broken()
                await asyncio.sleep(1)
                continue
            kind = event.get("type")
            if kind == EVENT_TYPE:
                channel = event["channel"]
                if channel in self.joined and "seq" in event:
                    self._advance(channel, Position(event["epoch"], event["seq"]))
                await self.deliver(channel, event["frame"])
            elif kind == HEARTBEAT_TYPE:
                self._last_beat = asyncio.get_running_loop().time()
                if not self.healthy:
                    self.healthy = True
                    logger.warning("pushgateway hub: channel layer is back; checking positions")
                    self._spawn(self.verify(tuple(self.joined)))

    async def _heartbeat_forever(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_beat = loop.time()
        with contextlib.suppress(Exception):
            await self._layer_call(self.layer.group_add, self.heartbeat_group)
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await asyncio.wait_for(
                    self.layer.group_send(self.heartbeat_group, {"type": HEARTBEAT_TYPE}),
                    self.timeout,
                )
            except Exception:
                self._broken()
                continue
            now = loop.time()
            if now - self._last_beat > MISSING_BEATS * HEARTBEAT_SECONDS:
                self._broken()
                # The layer takes messages but ours do not come back: a layer that keeps
                # memberships in Redis lost them. Join everything again (not too often).
                if now - self._last_rejoin > MISSING_BEATS * HEARTBEAT_SECONDS:
                    self._last_rejoin = now
                    await self._rejoin()

    def _broken(self) -> None:
        if self.healthy:
            self.healthy = False
            logger.warning("pushgateway hub: lost the channel layer; pages resync when it is back")

    async def _rejoin(self) -> None:
        for group in (self.heartbeat_group, *map(group_name, tuple(self.joined))):
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
                try:
                    await self.verify(tuple(self.joined))
                except Exception:
                    logger.exception("pushgateway hub: checking positions failed")

    async def deliver(self, channel: str, frame: str) -> int:
        """Write `frame` to every local socket on `channel`; returns how many."""
        sockets = tuple(self.sockets.get(channel, ()))
        for socket in sockets:
            try:
                await socket.send_frame(frame)
            except Exception:
                logger.exception("pushgateway hub: send to one socket failed")
        return len(sockets)


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


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
        hub = _hubs[loop] = Hub(layer, backend.aread_positions, backend.timeout)
    return hub
