"""Several Redis shards: one shard's restart heals its own channels and leaves the others alone.

Real Redis processes (two shards of one channels_redis pub/sub layer), the Channels backend
publishing on them, and the hub of this process with a recording socket per channel.
"""

import asyncio
import json
import time

from channels_app.hub import backend_hub
from pushgateway.backends import get_backend
from pushgateway.message import Message

PUBSUB_LAYER = "channels_redis.pubsub.RedisPubSubChannelLayer"


class Socket:
    def __init__(self) -> None:
        self.frames: list[dict] = []

    def push(self, message: dict) -> None:
        self.frames.append(json.loads(message["text"]))

    def push_many(self, batch) -> None:
        for message in batch:
            self.push(message)


async def until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.02)


async def test_a_shards_restart_heals_its_own_channels_and_leaves_the_others_alone(
    settings, start_redis
):
    shards = [start_redis(), start_redis()]
    hosts = [{"address": shard.url, "socket_timeout": None} for shard in shards]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": PUBSUB_LAYER, "CONFIG": {"hosts": hosts}}}
    backend = get_backend()
    on_shard = backend.positions.by_shard(f"shard-{n}" for n in range(40))
    channels = {index: names[:2] for index, names in on_shard.items()}
    hub = backend_hub(backend)  # as each server process's (channels_app.hub.get_hub)
    sockets = {channel: Socket() for names in channels.values() for channel in names}
    for channel, socket in sockets.items():
        await hub.subscribe(channel, socket)
        await hub.position(channel)  # as the consumer asks, to confirm the subscription

    def publish(names):
        backend.send_messages([Message(channel) for channel in names])

    publish(sockets)
    await until(lambda: all(s.frames for s in sockets.values()), 5, "the first hints")
    await asyncio.sleep(1)  # past the hub's check after a join

    # Each shard in turn restarts, forgetting its positions and subscriptions, and a hint
    # goes out at once on its channels (before the hub has subscribed there again).
    epochs = {channel: s.frames[-1]["position"]["epoch"] for channel, s in sockets.items()}
    for index, shard in enumerate(shards):
        restarted = channels[index]
        for socket in sockets.values():
            socket.frames.clear()
        shard.stop(kill=True)
        shard.start()
        publish(restarted)
        told = [told_of(sockets[c], epochs[c]) for c in restarted]
        await until(lambda told=told: all(t() for t in told), 5, "the pages told")
        publish(restarted)  # and the hints after that are messages that follow
        last = [sockets[c].frames for c in restarted]
        await until(
            lambda last=last: all(f and f[-1]["position"]["seq"] >= 2 for f in last), 5, "next"
        )
        assert all(frames[-1]["type"] == "message" for frames in last)
        epochs.update({c: sockets[c].frames[-1]["position"]["epoch"] for c in restarted})
        # The other shard's pages heard nothing: no resync, no refetch.
        others = [c for i, names in channels.items() if i != index for c in names]
        assert [sockets[c].frames for c in others] == [[] for _ in others]
    backend.close()


def told_of(socket: Socket, epoch: str):
    """Whether the page behind `socket` has been told it may have missed something."""
    return lambda: any(
        f["type"] == "resync" or f["position"]["epoch"] != epoch for f in socket.frames
    )
