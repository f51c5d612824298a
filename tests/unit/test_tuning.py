"""Server tuning (channels_app.tuning); the autobahn adapter it uses is checked in
tests/integration/test_server_adapters.py."""

import asyncio
import gc

import pytest

from channels_app import tuning


@pytest.fixture
def thawed():
    """Leave the test process as it was: nothing frozen out of the collector."""
    gc.unfreeze()
    gc.collect()  # no garbage of earlier tests for a thaw to find
    yield
    gc.unfreeze()


async def test_socket_gc_freezes_after_a_burst_settles(thawed):
    # Compared with the count before, not with 0: CPython 3.12.1 keeps a few hundred
    # objects in the permanent generation even after gc.unfreeze() and a collection.
    unfrozen = gc.get_freeze_count()
    socket_gc = tuning.SocketGc(quiet=0.05, burst=1000, count_open=lambda: 10)
    for _ in range(10):
        socket_gc.socket_opened()
    assert gc.get_freeze_count() == unfrozen
    await asyncio.sleep(0.15)
    assert socket_gc.freezes == 1
    assert gc.get_freeze_count() > unfrozen


async def test_socket_gc_looks_again_when_a_burst_ending_on_a_round_number_settles(thawed):
    socket_gc = tuning.SocketGc(quiet=0.05, burst=3, count_open=lambda: 3)
    for _ in range(3):
        socket_gc.socket_opened()
    assert socket_gc.freezes == 1
    await asyncio.sleep(0.15)
    assert socket_gc.freezes == 2  # the settled check (which may thaw) still ran


def test_socket_gc_freezes_at_once_every_burst(thawed):
    socket_gc = tuning.SocketGc(quiet=60, burst=3, count_open=lambda: 3)
    for _ in range(3):
        socket_gc.socket_opened()
    assert socket_gc.freezes == 1 and gc.get_freeze_count() > 0


class Cycle:
    """What a closed socket may leave behind: objects only a full collection frees."""

    def __init__(self):
        self.me = self


def test_socket_gc_thaw_reclaims_cycles_of_closed_sockets(thawed):
    socket_gc = tuning.SocketGc(quiet=60, burst=1, count_open=lambda: 5000)
    sockets = [Cycle() for _ in range(5000)]
    socket_gc.socket_opened()  # frozen with the sockets alive
    del sockets  # they close; reference counting cannot free a cycle
    before = gc.get_freeze_count()
    socket_gc.thaw()
    assert gc.get_freeze_count() <= before - 5000


def test_socket_gc_thaws_once_as_many_sockets_closed_as_are_open(thawed):
    open_now = [0]
    socket_gc = tuning.SocketGc(
        quiet=60, burst=100, thaw_ratio=1.0, min_closed=10, count_open=lambda: open_now[0]
    )
    for _ in range(100):  # a burst of 100 opens: frozen at once, never thawed mid-burst
        socket_gc.socket_opened()
    open_now[0] = 100
    socket_gc.freeze(settled=True)
    assert (socket_gc.freezes, socket_gc.thaws) == (2, 0)
    open_now[0] = 60  # 40 closed, 60 open: not yet
    socket_gc.freeze(settled=True)
    assert socket_gc.thaws == 0
    for _ in range(30):  # 30 more open: 130 opened since the start
        socket_gc.socket_opened()
    open_now[0] = 80  # 50 closed, 80 open
    socket_gc.freeze(settled=True)
    assert socket_gc.thaws == 0
    open_now[0] = 40  # 90 closed, 40 open: reclaim them
    socket_gc.freeze(settled=True)
    assert socket_gc.thaws == 1
    assert socket_gc.closed_since_thaw() == 0
    assert socket_gc.thaw_ratio == 4.0  # it found no cycles: the next thaw waits longer


def test_socket_gc_keeps_thawing_as_often_while_closed_sockets_leave_cycles(thawed):
    open_now = [1000]
    socket_gc = tuning.SocketGc(
        quiet=60, burst=10_000, min_closed=1, count_open=lambda: open_now[0]
    )
    socket_gc.opened_since_thaw = 2000  # 1000 closed
    closed = [Cycle() for _ in range(20 * 1000)]  # 20 objects in cycles per closed socket
    socket_gc.freeze()
    del closed
    socket_gc.freeze(settled=True)
    assert socket_gc.thaws == 1
    assert socket_gc.thaw_ratio == socket_gc.base_thaw_ratio


def test_socket_gc_freezes_what_survives_a_full_collection(thawed):
    unfrozen = gc.get_freeze_count()  # not 0 on CPython 3.12.1 (see above)
    socket_gc = tuning.SocketGc(count_open=lambda: 0)
    socket_gc.install()
    try:
        gc.collect()
        assert gc.get_freeze_count() > unfrozen
    finally:
        socket_gc.uninstall()
    gc.unfreeze()
    gc.collect()
    assert gc.get_freeze_count() == unfrozen


def test_apply_names_its_knobs(monkeypatch):
    monkeypatch.setattr(tuning, "frames", tuning.frames)  # restored after the test
    assert tuning.apply("off") == set()
    assert tuning.frames is False
    assert tuning.apply("autobahn,frames") == {"autobahn", "frames"}
    assert tuning.frames is True
    with pytest.raises(ValueError, match="unknown"):
        tuning.apply("gc,fast")
