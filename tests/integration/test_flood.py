"""What one client may cost: a flood of fresh channel names from one address leaves another
page's subscribe as fast as it was, and the process within its cap (docs/security.md)."""

import json
import socket
import statistics
import subprocess
import time

import pytest
from websockets.sync.client import connect

from pushgateway.backends.base import Limits
from tests.support.servers import PYTHON, ROOT, subscribe

pytestmark = pytest.mark.servers

FLOODER = "127.0.0.1"
PAGE = "127.0.0.2"  # another client address (all of 127/8 is loopback)
SAMPLES = 25


def page_socket(daphne, source: str):
    """A WebSocket to `daphne` from the local address `source`."""
    sock = socket.create_connection(("127.0.0.1", daphne.port), 5, source_address=(source, 0))
    return connect(daphne.ws_url, sock=sock, origin=daphne.url, open_timeout=5)


def subscribe_ms(ws, channel: str) -> float:
    started = time.perf_counter()
    subscribe(ws, channel)
    return (time.perf_counter() - started) * 1000


def start_flood(daphne, source: str, seconds: float, sockets: int = 50, names: int = 100):
    """tests/support/flood_clients.py against `daphne`, once it floods."""
    args = ["-m", "tests.support.flood_clients", "127.0.0.1", str(daphne.port)]
    args += ["--source", source, "--sockets", str(sockets), "--names", str(names)]
    flood = subprocess.Popen(
        [PYTHON, *args, "--seconds", str(seconds)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert flood.stdout.readline() == "flooding\n", flood.communicate(timeout=60)
    return flood


def flood_result(flood) -> dict:
    out, _ = flood.communicate(timeout=60)
    return json.loads(out.splitlines()[-1])


def groups_in_redis(redis) -> int:
    """The channel-layer groups the server has joined, as Redis sees them (its SUBSCRIBEs,
    but for the hub's own channel and heartbeat group)."""
    with redis.client() as client:
        return sum(
            1
            for name in client.pubsub_channels()
            if b"pushgateway.heartbeat" not in name and b"pushgateway.hub." not in name
        )


def test_a_flood_of_fresh_names_leaves_another_pages_subscribe_fast(own_redis, start_daphne):
    """50 sockets from one address, each subscribing to 100 fresh names at once and
    reconnecting, for 8 s: another address's page subscribes (to fresh names too) within
    twice its unloaded median, and the process joins no more than MAX_CHANNELS."""
    daphne = start_daphne(own_redis.url)
    with page_socket(daphne, PAGE) as page:
        subscribe(page, "warm-up")
        unloaded = [subscribe_ms(page, f"quiet-{n}") for n in range(SAMPLES)]
        flood = start_flood(daphne, FLOODER, seconds=8)
        flooded, peak = [], 0
        for n in range(SAMPLES):
            flooded.append(subscribe_ms(page, f"busy-{n}"))
            peak = max(peak, groups_in_redis(own_redis))
            time.sleep(0.1)
    result = flood_result(flood)
    quiet, busy = statistics.median(unloaded), statistics.median(flooded)
    print(f"unloaded median {quiet:.1f} ms, flooded median {busy:.1f} ms, peak {peak} groups")
    print(result)
    assert result["failures"] == []
    assert result["cycles"] >= 50  # every socket reconnected at least once
    assert busy <= max(2 * quiet, quiet + 5), (unloaded, flooded)
    assert peak <= Limits().MAX_CHANNELS
