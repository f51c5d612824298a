"""Rolling restart under load: gunicorn replaces its two uvicorn workers under 4,000 pages.

The pages are asyncio clients in separate processes that reconnect and count refetches as
the browser module does (bench/rolling_restart.py, whose benchmark compares this with no
drain); a publisher sends hints on random channels throughout.
"""

import pytest

from bench.rolling_restart import run_mode
from tests.support.servers import project_env

pytestmark = pytest.mark.servers

SOCKETS = 4000
DRAIN_SECONDS = 3.0


def test_a_rolling_restart_under_4000_pages_is_spread_and_exact(own_redis, database, log_dir):
    env = project_env(REDIS_URL=own_redis.url, **database.env)
    seen = run_mode(SOCKETS, DRAIN_SECONDS, old_client=False, env=env, log_dir=log_dir)
    print(seen)
    # Every page is back (run_mode waits for each to be subscribed again), each closed once
    # by its draining worker with the service-restart code.
    assert seen["closes"] == {"closed 4012": SOCKETS}
    # The drain spread the reconnects: no second holds half of them.
    assert seen["peak"] <= seen["reconnects"] / 2, seen["per second"]
    # Exact: a refetch for each page whose channel changed while it was away (unless the
    # hints on its new socket told it before the confirmation did; or the hub's check after
    # joining found a hint published as it joined), none on a channel without hints.
    assert seen["changed"] > 0 and seen["stale"] == seen["changed"]
    away = seen["changed"] - seen["changed, heard as a message"]
    assert seen["refetches"] == away + seen["resynced by the server"]
    assert seen["refetches untouched"] == 0 and seen["refetched twice"] == 0
    # No hint lost: none missing on a subscribed socket, and every page ends where its
    # channel is.
    assert seen["lost while subscribed"] == 0 and seen["lost"] == 0
    assert seen["errors"] == 0
