"""Graceful drain under the real servers: SIGTERM closes every socket with 4012 over the
window, refuses new ones meanwhile, then the server exits (channels_app.drain).

gunicorn's rolling restart (kill -HUP) under load is tests/system/test_rolling_restart.py.
"""

import asyncio
import json
import signal
import time

import pytest

from bench.wsclient import connect
from pushgateway.constants import WEBSOCKET_PATH, CloseCode
from tests.support.servers import Daphne, Uvicorn, options_env

pytestmark = pytest.mark.servers

WINDOW = 2.0
SOCKETS = 60


async def subscribed_sockets(port: int, count: int) -> list:
    """`count` sockets on `port`, each subscribed to a channel of its own."""
    sockets = []
    for n in range(count):
        answered = asyncio.get_running_loop().create_future()

        def on_text(data, answered=answered):
            if json.loads(data)["type"] == "subscribed" and not answered.done():
                answered.set_result(None)

        socket = await connect("127.0.0.1", port, WEBSOCKET_PATH, on_text)
        socket.send_json({"type": "subscribe", "channel": f"drain-{n}"})
        await asyncio.wait_for(answered, 10)
        sockets.append(socket)
    return sockets


@pytest.mark.parametrize("server", [Daphne, Uvicorn], ids=["daphne", "uvicorn"])
async def test_sigterm_closes_every_socket_with_4012_over_the_window(start_daphne, server):
    app = start_daphne(server=server, **options_env({"DRAIN_SECONDS": WINDOW}))
    sockets = await subscribed_sockets(app.port, SOCKETS)
    closed_at = []
    for socket in sockets:
        socket.closed.add_done_callback(lambda _: closed_at.append(time.monotonic()))

    signalled = time.monotonic()
    app.process.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(WINDOW / 4)
    with pytest.raises(OSError):  # refused during the drain: the page reconnects elsewhere
        await connect("127.0.0.1", app.port, WEBSOCKET_PATH, lambda _: None)
    codes = await asyncio.wait_for(asyncio.gather(*(s.closed for s in sockets)), WINDOW + 5)

    assert codes == [CloseCode.SERVICE_RESTART] * SOCKETS
    offsets = sorted(t - signalled for t in closed_at)
    assert offsets[-1] - offsets[0] >= WINDOW * 0.6  # spread, not all at once
    assert offsets[-1] < WINDOW + 1.5
    halves = [sum(1 for t in offsets if t < offsets[0] + WINDOW / 2), SOCKETS]
    assert halves[0] <= SOCKETS * 0.75, offsets
    # Then the server's own shutdown: the process ends.
    await asyncio.get_running_loop().run_in_executor(None, app.process.proc.wait, 10)
    log = app.process.log()
    assert "Traceback" not in log and "draining 60 WebSocket(s)" in log and "drained in" in log
