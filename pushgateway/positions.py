"""Stream positions: where each channel's stream of hints is, so pages can tell what they missed.

Every publish on a channel advances its position ``(epoch, seq)`` by one. A page that knows
the position it last saw compares it with the current one: equal means it missed nothing;
a smaller ``seq`` means hints were published since; another ``epoch`` means the store lost
its memory of the channel (restart, key expiry) and nothing can be compared. No hint is
stored: hints carry no data, so one refetch covers any run of missed ones.

A channel nobody has published on for ``ttl`` seconds reads as :data:`START` (epoch "",
seq 0). Reads never create anything, so asking for positions of arbitrary names costs the
store nothing; a publish on a forgotten channel starts a fresh random epoch, so a page that
saw the old stream always notices the new one. Only a page that saw :data:`START` and then
stayed out of contact for longer than ``ttl`` cannot tell; the browser module resyncs after
such a long absence.

Two stores: :class:`MemoryPositions` (one process: the in-memory channel layer) and
:class:`RedisPositions` (every process sharing a Redis; the channels backend also uses its
Lua script to advance and publish in one round trip).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .protocol import START, Position, group_name
from .sender import BACKOFF_MAX

#: Seconds a channel's position outlives its last publish or read (3 days).
DEFAULT_TTL = 3 * 24 * 3600


def retried_errors() -> tuple[type[Exception], ...]:
    """The errors worth another attempt at a Redis call: connection trouble and timeouts
    (redis-py's own, and the builtin ones asyncio.wait_for and sockets raise)."""
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # a layer without redis-py
        return (ConnectionError, TimeoutError)
    return (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


def redis_retry(retries: int, backoff_factor: float, *, for_asyncio: bool = False):
    """redis-py's Retry: `retries` more attempts after sleeps of 2, 4, 8... x backoff_factor
    seconds (at most BACKOFF_MAX each)."""
    from redis.backoff import ExponentialBackoff

    if for_asyncio:
        from redis.asyncio.retry import Retry
    else:
        from redis.retry import Retry
    backoff = ExponentialBackoff(cap=BACKOFF_MAX, base=backoff_factor)
    return Retry(backoff, retries, supported_errors=retried_errors())


def _no_cleanup(error: Exception) -> None:
    """redis-py already dropped the connection that failed; the next attempt takes another."""


def new_epoch() -> str:
    return secrets.token_hex(6)


class MemoryPositions:
    """Positions in this process's memory: right for the in-memory channel layer, where
    publishers and sockets share one process. Entries live `ttl` seconds after their last
    publish or read; reads never add one."""

    def __init__(self, ttl: float = DEFAULT_TTL) -> None:
        self.ttl = ttl
        self._positions: dict[str, tuple[Position, float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def advance(self, channels: Sequence[str]) -> list[Position]:
        """One publish on each of `channels` (in order): their new positions."""
        now = time.monotonic()
        out = []
        with self._lock:
            if now > self._next_sweep:
                self._sweep(now)
            for channel in channels:
                epoch, seq = self._current(channel, now)
                position = Position(epoch or new_epoch(), seq + 1)
                self._positions[channel] = (position, now + self.ttl)
                out.append(position)
        return out

    def read(self, channels: Iterable[str]) -> dict[str, Position]:
        now = time.monotonic()
        out = {}
        with self._lock:
            for channel in channels:
                position = out[channel] = self._current(channel, now)
                if position != START:
                    self._positions[channel] = (position, now + self.ttl)
        return out

    async def aread(self, channels: Iterable[str]) -> dict[str, Position]:
        return self.read(channels)

    def _current(self, channel: str, now: float) -> Position:
        entry = self._positions.get(channel)
        if entry is None or entry[1] < now:
            return START
        return entry[0]

    def _sweep(self, now: float) -> None:
        self._positions = {k: v for k, v in self._positions.items() if v[1] >= now}
        self._next_sweep = now + min(self.ttl, 3600)

    def close(self) -> None:
        pass


# One publish on a channel: its position one step further, in a fresh epoch where the key is
# new or was forgotten. ARGV[1] is the ttl, ARGV[2] a fresh epoch.
ADVANCE_ONE_LUA = """
local function advance(key)
  local seq = redis.call('HINCRBY', key, 's', 1)
  local epoch = redis.call('HGET', key, 'e')
  if seq == 1 or not epoch then
    epoch = ARGV[2]
    redis.call('HSET', key, 'e', epoch, 's', 1)
    seq = 1
  end
  redis.call('EXPIRE', key, ARGV[1])
  return epoch, seq
end
"""

# KEYS: position keys. Returns {epoch, seq} per key, after one increment each.
ADVANCE_LUA = (
    ADVANCE_ONE_LUA
    + """
local out = {}
for i, key in ipairs(KEYS) do
  local epoch, seq = advance(key)
  out[i] = {epoch, seq}
end
return out
"""
)

# As ADVANCE_LUA, and publish each message on its Redis channel as the layer would: ARGV[3]
# is the publish time, then (pubsub channel, channel, frame head) per key. The frame is the
# head plus the position, so it is serialised once, here, with the position it must carry;
# the payload is the msgpack map channels_redis' RedisPubSubChannelLayer deserialises.
ADVANCE_AND_PUBLISH_LUA = (
    ADVANCE_ONE_LUA
    + """
for i, key in ipairs(KEYS) do
  local epoch, seq = advance(key)
  local base = 3 * i + 1
  local frame = ARGV[base + 2] .. ',"position":{"epoch":"' .. epoch .. '","seq":' .. seq .. '}}'
  redis.call('PUBLISH', ARGV[base], cmsgpack.pack({
    type = 'pushgateway.frame', channel = ARGV[base + 1], frame = frame,
    epoch = epoch, seq = seq, t = tonumber(ARGV[3])}))
end
return #KEYS
"""
)

# KEYS: position keys. Refreshes the ttl of those that exist; returns {epoch, seq} or false.
READ_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  local found = redis.call('HMGET', key, 'e', 's')
  if found[1] and found[2] then
    redis.call('EXPIRE', key, ARGV[1])
    out[i] = found
  else
    out[i] = false
  end
end
return out
"""


def shard_index(name: str, shards: int) -> int:
    """The shard channels_redis places `name` on (its own hash function; see
    tests/integration/test_backends.py, which fails if that ever changes)."""
    if shards == 1:
        return 0
    from channels_redis.utils import _consistent_hash

    return _consistent_hash(name, shards)


def _position(found) -> Position:
    if not found:
        return START
    epoch, seq = found
    return Position(epoch.decode() if isinstance(epoch, bytes) else epoch, int(seq))


class RedisPositions:
    """Positions in Redis, shared by every publisher and server process using it.

    `hosts` are channels_redis-style host entries (URLs or dicts); a channel's position
    lives on the shard channels_redis uses for the channel's group, so one script can
    advance it and publish there. Synchronous calls are for the publishing thread and
    sync views; `aread` is for the event loop. Every attempt has `timeout`; publishes make
    `retries` more attempts after a connection error or timeout, with redis-py's backoff.
    """

    def __init__(
        self,
        hosts: Sequence[str | dict],
        *,
        prefix: str = "asgi",
        ttl: float = DEFAULT_TTL,
        timeout: float = 5.0,
        retries: int = 0,
        backoff_factor: float = 0.3,
    ) -> None:
        self.hosts = [{"address": h} if isinstance(h, str) else dict(h) for h in hosts]
        self.prefix = prefix
        self.ttl = int(ttl)
        self.timeout = timeout
        self.retry = redis_retry(retries, backoff_factor) if retries else None
        self.forget_connections()

    def forget_connections(self) -> None:
        """Start with no connections (a forked child must not use its parent's)."""
        self._sync: list[_Shard] | None = None
        self._async: dict[asyncio.AbstractEventLoop, list[_Shard]] = {}
        self._lock = threading.Lock()

    def key(self, channel: str) -> str:
        return f"{self.prefix}:pushgateway:position:{channel}"

    def pubsub_name(self, channel: str) -> str:
        """The Redis channel channels_redis' pub/sub layer uses for `channel`'s group."""
        return f"{self.prefix}__group__{group_name(channel)}"

    def by_shard(self, channels: Iterable[str]) -> dict[int, list[str]]:
        shards: dict[int, list[str]] = {}
        count = len(self.hosts)
        for channel in channels:
            index = shard_index(self.pubsub_name(channel), count)
            shards.setdefault(index, []).append(channel)
        return shards

    def _connect(self, cls, host: dict):
        options = {k: v for k, v in host.items() if k not in ("address", "max_connections")}
        # One attempt per call at the connection level: publishes retry the whole call
        # (below), and reads must not make a page wait through retries.
        options.update(socket_timeout=self.timeout, socket_connect_timeout=self.timeout, retry=None)
        if "address" in host:
            return _Shard(cls.from_url(host["address"], **options))
        return _Shard(cls(**options))

    def shards(self) -> list[_Shard]:
        if self._sync is None:
            import redis

            with self._lock:
                if self._sync is None:
                    self._sync = [self._connect(redis.Redis, host) for host in self.hosts]
        return self._sync

    def _ashards(self) -> list[_Shard]:
        loop = asyncio.get_running_loop()
        shards = self._async.get(loop)
        if shards is None:
            from redis import asyncio as aioredis

            for old in [old for old in self._async if old.is_closed()]:
                del self._async[old]
            shards = self._async[loop] = [self._connect(aioredis.Redis, h) for h in self.hosts]
        return shards

    def _publish_call(self, script, keys: list[str], args: list[Any]):
        """A script call of a publisher: retried after connection errors and timeouts."""
        if self.retry is None:
            return script(keys=keys, args=args)
        return self.retry.call_with_retry(lambda: script(keys=keys, args=args), _no_cleanup)

    def advance(self, channels: Sequence[str]) -> list[Position]:
        found: dict[str, list[Position]] = {}
        for index, names in self.by_shard(channels).items():
            keys = [self.key(c) for c in names]
            shard = self.shards()[index]
            result = self._publish_call(shard.advance, keys, [self.ttl, new_epoch()])
            for name, position in zip(names, result, strict=True):
                found.setdefault(name, []).append(_position(position))
        return [found[channel].pop(0) for channel in channels]

    def advance_and_publish(self, items: Sequence[tuple[str, str]]) -> None:
        """For each (channel, frame head): advance the position, publish the frame."""
        heads: dict[str, list[str]] = {}
        for channel, head in items:
            heads.setdefault(channel, []).append(head)
        for index, names in self.by_shard(channel for channel, _ in items).items():
            args: list[Any] = [self.ttl, new_epoch(), repr(time.time())]
            for channel in names:
                args += [self.pubsub_name(channel), channel, heads[channel].pop(0)]
            keys = [self.key(c) for c in names]
            self._publish_call(self.shards()[index].advance_and_publish, keys, args)

    def read(self, channels: Iterable[str]) -> dict[str, Position]:
        out = {}
        for index, names in self.by_shard(channels).items():
            keys = [self.key(c) for c in names]
            found = self.shards()[index].read(keys=keys, args=[self.ttl])
            out.update(zip(names, map(_position, found), strict=True))
        return out

    async def aread(self, channels: Iterable[str]) -> dict[str, Position]:
        out = {}
        shards = self._ashards()
        for index, names in self.by_shard(channels).items():
            keys = [self.key(c) for c in names]
            try:
                found = await self._aread_shard(shards[index], keys)
            except TimeoutError:
                # A deadline missed once is more often an event loop too busy to read the
                # answer (a reconnect storm) than a store that hangs: one more attempt spares
                # the pages a refetch.
                found = await self._aread_shard(shards[index], keys)
            out.update(zip(names, map(_position, found), strict=True))
        return out

    async def _aread_shard(self, shard: _Shard, keys: list[str]) -> list:
        return await asyncio.wait_for(shard.read(keys=keys, args=[self.ttl]), self.timeout)

    def close(self) -> None:
        for shard in self._sync or ():
            shard.client.close()
        self._sync = None


class _Shard:
    """One Redis client with the scripts registered on it (EVALSHA, loaded on demand)."""

    __slots__ = ("client", "advance", "advance_and_publish", "read")

    def __init__(self, client) -> None:
        self.client = client
        self.advance = client.register_script(ADVANCE_LUA)
        self.advance_and_publish = client.register_script(ADVANCE_AND_PUBLISH_LUA)
        self.read = client.register_script(READ_LUA)
