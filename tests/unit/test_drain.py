"""The graceful drain in-process: sockets closed with 4012 over the window, none taken meanwhile.

The real servers' SIGTERM is tried in tests/integration/test_drain.py and
tests/system/test_rolling_restart.py.
"""

import asyncio
import signal
import time

import pytest
from channels.testing import WebsocketCommunicator

from channels_app import drain as drain_module
from channels_app.asgi import application
from channels_app.drain import Drain
from pushgateway.constants import WEBSOCKET_PATH, CloseCode
from tests.support.sockets import ORIGIN, connect, subscribe


class Recorded:
    """A socket that notes when it was told to restart, and leaves at once."""

    def __init__(self, drain: Drain, closes: list[float]) -> None:
        self.drain, self.closes = drain, closes

    def restart(self) -> None:
        self.closes.append(time.monotonic())
        self.drain.closed(self)


async def test_the_closes_are_spread_evenly_over_the_window():
    drain, closes = Drain(seconds=1.0), []
    for _ in range(400):
        drain.opened(Recorded(drain, closes))
    started = time.monotonic()
    await drain.run()
    assert len(closes) == 400 and not drain.sockets
    offsets = [t - started for t in closes]
    assert max(offsets) == pytest.approx(1.0, abs=0.15)  # the window, not all at once
    tenths = [sum(1 for t in offsets if n / 10 <= t < (n + 1) / 10) for n in range(10)]
    assert max(tenths) <= 400 * 0.2, tenths  # no tenth of the window holds twice its share


async def test_a_draining_process_closes_with_4012_and_refuses_new_sockets(monkeypatch):
    drain = Drain(seconds=0.2)
    monkeypatch.setattr(drain_module, "_drain", drain)
    socket = await connect()
    await subscribe(socket, "drained")
    running = asyncio.ensure_future(drain.run())
    close = await socket.receive_output(timeout=2)
    assert close == {"type": "websocket.close", "code": CloseCode.SERVICE_RESTART}
    assert type(close["code"]) is int  # daphne's autobahn closes 1011 on an int subclass
    late = WebsocketCommunicator(application, WEBSOCKET_PATH, headers=ORIGIN)
    assert (await late.connect())[0] is False  # 403: the page reconnects elsewhere
    await socket.disconnect()
    await running
    assert not drain.sockets


async def test_the_servers_own_shutdown_runs_after_the_drain_and_at_once_when_told_twice():
    calls = []
    drain = Drain(seconds=0.2)
    drain.handler = lambda signum, frame: calls.append((signum, time.monotonic()))
    drain.loop = asyncio.get_running_loop()
    closes = []
    for _ in range(10):
        drain.opened(Recorded(drain, closes))
    drain._signalled(signal.SIGTERM, None)
    await asyncio.sleep(0)
    assert calls == [] and drain.draining
    await drain.task
    [(signum, at)] = calls
    assert signum == signal.SIGTERM and len(closes) == 10 and at >= max(closes)

    drain = Drain(seconds=10)
    drain.handler = lambda signum, frame: calls.append((signum, time.monotonic()))
    drain.loop = asyncio.get_running_loop()
    drain.draining = True
    drain._signalled(signal.SIGTERM, None)  # a second SIGTERM: no more waiting
    assert len(calls) == 2


def test_outside_a_server_nothing_is_installed(monkeypatch):
    monkeypatch.setattr(drain_module, "_drain", None)

    async def first_socket():
        return drain_module.get_drain()

    before = signal.getsignal(signal.SIGTERM)
    drain = asyncio.run(first_socket())
    assert signal.getsignal(signal.SIGTERM) is before and drain.handler is None
