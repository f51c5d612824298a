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

A store must never hand a page's seqs to other hints. A Redis can come back older than what
pages saw (restored from a snapshot, an AOF that lost its last second, a lagging replica
promoted), so each Redis position is stamped with the incarnation of the Redis that wrote it
(INCARNATION_LUA); one stamped by another incarnation starts a fresh epoch when it is next
published on or read. docs/protocol.md gives the argument for each failure case.

Two stores: :class:`MemoryPositions` (one process: the in-memory channel layer) and
:class:`RedisPositions` (every process sharing a Redis;
backends/pubsub.py runs its own script on the store's shards to advance and publish in one
round trip).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from . import redisretry
from .adapters import CHANNELS_REDIS_PREFIX, channels_redis_shard, pubsub_group_channel
from .constants import POSITION_READ_CHUNK
from .layer import group_name
from .protocol import START, Position

#: Seconds a channel's position outlives its last publish or read (3 days).
DEFAULT_TTL = 3 * 24 * 3600


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


# Which Redis incarnation the script runs in: the server's run id (new on every start of the
# process) and its replication id (new on every promotion of a replica, and on every start
# of a primary), 16 hex digits of each. A position is stamped with the incarnation that wrote
# it; one stamped by another may have gone back (a restart from an older snapshot, an AOF
# that lost its last second, a lagging replica promoted) and starts a fresh epoch instead of
# handing out seqs a page has seen. Learned once per script call, and only when needed.
INCARNATION_LUA = """
local incarnation_id
local function incarnation()
  if not incarnation_id then
    local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
    local repl = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or ''
    incarnation_id = string.sub(run, 1, 16) .. string.sub(repl, 1, 16)
  end
  return incarnation_id
end
"""

# One publish on a channel: its position one step further, in a fresh epoch where the key is
# new, was forgotten or was written by another incarnation. ARGV[1] is the ttl, ARGV[2] a
# fresh epoch. (Also the first part of backends/pubsub.py's script.)
ADVANCE_ONE_LUA = (
    INCARNATION_LUA
    + """
local function advance(key)
  local found = redis.call('HMGET', key, 'e', 's', 'i')
  local epoch = found[1]
  if not epoch or not found[2] or found[3] ~= incarnation() then
    epoch = ARGV[2]
    redis.call('HSET', key, 'e', epoch, 's', 0, 'i', incarnation())
  end
  local seq = redis.call('HINCRBY', key, 's', 1)
  redis.call('EXPIRE', key, ARGV[1])
  return epoch, seq
end
"""
)

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

# KEYS: position keys; ARGV[1] is the ttl, ARGV[2] a fresh epoch. Refreshes the ttl of those
# that exist and returns {epoch, seq} or false. A position another incarnation wrote moves to
# the fresh epoch at seq 0 (reads create no key, but may start an existing one over): pages
# resync once, and the next publish (seq 1) follows it.
READ_LUA = (
    INCARNATION_LUA
    + """
local out = {}
for i, key in ipairs(KEYS) do
  local found = redis.call('HMGET', key, 'e', 's', 'i')
  if found[1] and found[2] then
    if found[3] ~= incarnation() then
      found = {ARGV[2], 0}
      redis.call('HSET', key, 'e', ARGV[2], 's', 0, 'i', incarnation())
    end
    redis.call('EXPIRE', key, ARGV[1])
    out[i] = {found[1], found[2]}
  else
    out[i] = false
  end
end
return out
"""
)


def _position(found) -> Position:
    if not found:
        return START
    epoch, seq = found
    return Position(epoch.decode() if isinstance(epoch, bytes) else epoch, int(seq))


class RedisPositions:
    """Positions in Redis, shared by every publisher and server process using it.

    `hosts` are channels_redis-style host entries (URLs, or dicts: connection keywords, or
    `sentinels` and `master_name` for a primary under Redis Sentinel); a channel's position
    lives on the shard channels_redis' pub/sub layer uses for the channel's group, so one
    script can advance it and publish there. Synchronous calls are for the publishing thread
    and sync views; `aread` is for the event loop. Every attempt has `timeout` (None: no
    deadline); publishes are retried under `retry` (redis-py's Retry, see redisretry), reads
    are not: a page must not wait through retries.
    """

    def __init__(
        self,
        hosts: Sequence[str | dict],
        *,
        prefix: str = CHANNELS_REDIS_PREFIX,
        ttl: float = DEFAULT_TTL,
        timeout: float | None = None,
        retry: Any = None,
    ) -> None:
        self.hosts = [{"address": h} if isinstance(h, str) else dict(h) for h in hosts]
        self.prefix = prefix
        self.ttl = int(ttl)
        self.timeout = timeout
        self.retry = retry
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
        return pubsub_group_channel(self.prefix, group_name(channel))

    def by_shard(self, channels: Iterable[str]) -> dict[int, list[str]]:
        """`channels` grouped by the index of the shard that keeps their positions."""
        shards: dict[int, list[str]] = {}
        count = len(self.hosts)
        for channel in channels:
            index = channels_redis_shard(self.pubsub_name(channel), count)
            shards.setdefault(index, []).append(channel)
        return shards

    def read_chunks(self, channels: Iterable[str]) -> list[tuple[int, list[str]]]:
        """`channels` as (shard index, at most POSITION_READ_CHUNK channels) pairs: one read
        script each, so a read of many channels never holds a Redis for long."""
        return [
            (index, names[start : start + POSITION_READ_CHUNK])
            for index, names in self.by_shard(channels).items()
            for start in range(0, len(names), POSITION_READ_CHUNK)
        ]

    def _connect(self, cls, sentinel_cls, host: dict) -> _Shard:
        """A client (redis-py's `cls`, sync or asyncio) of `host`, in any of the forms
        channels_redis takes: an address URL, connection keywords, or a primary that
        Redis Sentinel names (`sentinels`, `master_name`; `sentinel_cls` asks them)."""
        options = {k: v for k, v in host.items() if k not in _NOT_CONNECTION_OPTIONS}
        # One attempt per call at the connection level: publishes retry the whole call
        # (below), and reads must not make a page wait through retries.
        timeouts = {"socket_timeout": self.timeout, "socket_connect_timeout": self.timeout}
        options.update(timeouts, retry=None)
        if "master_name" in host:
            # The sentinels are asked with the same deadline (each in turn, once).
            asked = {**(host.get("sentinel_kwargs") or {}), **timeouts}
            sentinel = sentinel_cls(host["sentinels"], sentinel_kwargs=asked)
            client = sentinel.master_for(host["master_name"], redis_class=cls, **options)
            return _Shard(client, sentinel.sentinels)
        if "address" in host:
            return _Shard(cls.from_url(host["address"], **options))
        return _Shard(cls(**options))

    def shards(self) -> list[_Shard]:
        if self._sync is None:
            import redis
            from redis.sentinel import Sentinel

            with self._lock:
                if self._sync is None:
                    self._sync = [self._connect(redis.Redis, Sentinel, h) for h in self.hosts]
        return self._sync

    def _ashards(self) -> list[_Shard]:
        loop = asyncio.get_running_loop()
        shards = self._async.get(loop)
        if shards is None:
            from redis.asyncio import Redis
            from redis.asyncio.sentinel import Sentinel

            for old in [old for old in self._async if old.is_closed()]:
                del self._async[old]
            shards = self._async[loop] = [self._connect(Redis, Sentinel, h) for h in self.hosts]
        return shards

    def run(self, index: int, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a publisher's Lua `script` on shard `index`, retried under `retry`."""
        runner = self.shards()[index].script(script)
        return redisretry.call(self.retry, lambda: runner(keys=keys, args=args))

    def advance(self, channels: Sequence[str]) -> list[Position]:
        found: dict[str, list[Position]] = {}
        for index, names in self.by_shard(channels).items():
            keys = [self.key(c) for c in names]
            result = self.run(index, ADVANCE_LUA, keys, [self.ttl, new_epoch()])
            for name, position in zip(names, result, strict=True):
                found.setdefault(name, []).append(_position(position))
        return [found[channel].pop(0) for channel in channels]

    def read(self, channels: Iterable[str]) -> dict[str, Position]:
        out = {}
        for index, names in self.read_chunks(channels):
            keys = [self.key(c) for c in names]
            found = self.shards()[index].script(READ_LUA)(keys=keys, args=self._read_args())
            out.update(zip(names, map(_position, found), strict=True))
        return out

    async def aread(self, channels: Iterable[str]) -> dict[str, Position]:
        out = {}
        shards = self._ashards()
        for index, names in self.read_chunks(channels):
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

    async def aincarnations(self) -> list[str]:
        """The incarnation of the Redis behind each shard, in order (INCARNATION_LUA): a new
        one has restarted or failed over since. Each shard asked once, with `timeout`."""
        found = []
        for shard in self._ashards():
            ask = shard.script(INCARNATION_LUA + "return incarnation()")()
            found.append(await asyncio.wait_for(ask, self.timeout))
        return [i.decode() if isinstance(i, bytes) else i for i in found]

    def _read_args(self) -> list:
        return [self.ttl, new_epoch()]

    async def _aread_shard(self, shard: _Shard, keys: list[str]) -> list:
        read = shard.script(READ_LUA)(keys=keys, args=self._read_args())
        return await asyncio.wait_for(read, self.timeout)

    def close(self) -> None:
        for shard in self._sync or ():
            for client in (shard.client, *shard.sentinels):
                client.close()
        self._sync = None


# What a channels_redis host entry holds besides the keywords of a Redis connection.
_NOT_CONNECTION_OPTIONS = (
    "address",
    "max_connections",
    "sentinels",
    "master_name",
    "sentinel_kwargs",
)


class _Shard:
    """One Redis client (and under Sentinel, the clients asking the sentinels where the
    primary is) and the scripts registered on it (EVALSHA, loaded on demand)."""

    __slots__ = ("client", "scripts", "sentinels")

    def __init__(self, client, sentinels: Sequence[Any] = ()) -> None:
        self.client = client
        self.sentinels = sentinels
        self.scripts: dict[str, Any] = {}

    def script(self, text: str) -> Any:
        runner = self.scripts.get(text)
        if runner is None:
            runner = self.scripts[text] = self.client.register_script(text)
        return runner
