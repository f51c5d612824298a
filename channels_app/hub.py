"""The per-process hub: one channel-layer group membership per channel, local fan-out.

Consumers never join channel-layer groups themselves. The first local subscriber to a
channel makes the hub join that channel's group once for the whole process; the last one
leaving makes it leave. Each message arrives once per process with its frame already
serialised, and the hub writes that same string to every local socket.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from channels.layers import get_channel_layer

from pushgateway.backends.channels import EVENT_TYPE
from pushgateway.protocol import group_name

logger = logging.getLogger("pushgateway.hub")

# Channels' in-memory and core Redis layers forget group members added more than
# group_expiry (default 24 h) ago; the hub renews its memberships well before that.
RENEW_SECONDS = 3600


class Socket(Protocol):
    async def send_frame(self, text: str) -> None: ...


class Hub:
    def __init__(self, layer) -> None:
        self.layer = layer
        self.sockets: dict[str, set[Socket]] = {}
        self.joined: set[str] = set()
        self.channel_name: str | None = None
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, users
        self._receiver: asyncio.Task | None = None
        self._renewer: asyncio.Task | None = None

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
                    await self._ensure_receiver()
                    await self.layer.group_add(group_name(channel), self.channel_name)
                    self.joined.add(channel)
                elif have and not want:
                    self.joined.discard(channel)
                    await self.layer.group_discard(group_name(channel), self.channel_name)
        finally:
            lock, users = self._locks[channel]
            if users == 1:
                del self._locks[channel]
            else:
                self._locks[channel] = (lock, users - 1)

    async def _ensure_receiver(self) -> None:
        if self.channel_name is None:
            self.channel_name = await self.layer.new_channel("pushgateway.hub.")
        if self._receiver is None or self._receiver.done():
            self._receiver = asyncio.create_task(self._receive_forever())
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            for channel in tuple(self.joined):
                try:
                    await self.layer.group_add(group_name(channel), self.channel_name)
                except Exception:
                    logger.exception("pushgateway hub: renewing %r failed", channel)

    async def _receive_forever(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("pushgateway hub: channel layer receive failed; retrying")
                await asyncio.sleep(1)
                continue
            if event.get("type") == EVENT_TYPE:
                await self.deliver(event["channel"], event["frame"])

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


def get_hub() -> Hub:
    """The hub of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for old in [old for old in _hubs if old.is_closed()]:
            del _hubs[old]
        hub = _hubs[loop] = Hub(get_channel_layer())
    return hub
