"""A Redis that comes back older than what pages saw: real Redis, Sentinel, daphne, Chromium.

Redis restored from an older RDB snapshot, an AOF (`appendfsync everysec`) that lost its
last second, a replica promoted by Sentinel after it lagged: each hands out positions pages
have passed. In each case a publisher process saves comments throughout (one every 0.1 s on
"steady", and on "probe" when the test says); one Chromium page holds a client (a socket of
its own, as a page of its own would) on each of the "steady", "probe" and "job" channels,
recording its callbacks. Every page on a channel with hints after the event calls back (a
message, or one resync), no later hint is dropped, the page on the untouched channel ("job")
refetches at most once, and no save fails.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.support.host_publisher import Publisher
from tests.support.pages import new_event, open_clients, post_comment
from tests.support.servers import Process, RedisServer, project_env

pytestmark = [pytest.mark.browser, pytest.mark.servers]


class ThisHost:
    """Where the publisher runs: this machine (tests/system/test_hosts.py gives it a host)."""

    @staticmethod
    def start(name, args, log_dir, env=None, pipes=False) -> Process:
        return Process(name, args, log_dir, env, pipes)


class Watching:
    """The publisher and the page of clients, on the daphne at `base_url`."""

    def __init__(self, browser, base_url: str, log_dir, env: dict) -> None:
        self.publisher = Publisher(ThisHost(), log_dir, env)
        self.channels = {name: f"comments-{pk}" for name, pk in self.publisher.events.items()}
        self.publisher.save("job")  # every channel has a position: "job" has one to forget
        self.publisher.save("probe")
        self.page = browser.new_page()
        self.page.goto(base_url + "/")
        # No throttle: each hint its own callback.
        open_clients(self.page, self.channels.values(), throttle=0)
        # Past the server's check half a second after each join (a check in the moment its
        # subscription is down tells a page a position, then the hints after it are lost:
        # the page would rightly refetch twice).
        self.page.wait_for_timeout(1000)
        self.probe()

    def probe(self) -> float:
        """Save a comment on "probe" and wait until its page called back after the save."""
        saved = self.publisher.save("probe")["at"]
        self.page.wait_for_function(
            "([channel, at]) => calls.some((c) => c.channel === channel && c.at >= at)",
            arg=[self.channels["probe"], saved * 1000],
            timeout=10_000,
        )
        return saved

    def calls_since(self, moment: float) -> dict[str, list[str]]:
        """Each channel's callbacks since `moment` (its name: "steady", "probe", "job")."""
        calls = self.page.evaluate("calls")
        names = {channel: name for name, channel in self.channels.items()}
        found: dict[str, list[str]] = {name: [] for name in self.channels}
        for call in calls:
            if call["at"] >= moment * 1000:
                found[names[call["channel"]]].append(call["reason"])
        return found

    def check_healed(self, event: float) -> None:
        """After the event: later hints reach their pages, and each page refetched at most
        once for it; no save failed."""
        for _ in range(3):  # each later hint calls back (probe waits for it)
            self.probe()
        time.sleep(1)  # the stream goes on: a late resync would be here by now
        calls = self.calls_since(event)
        assert calls["steady"] and calls["probe"], calls
        for name, reasons in calls.items():
            assert reasons.count("resync") + reasons.count("poll") <= 1, (name, reasons)
        assert calls["job"] in ([], ["resync"])
        stats = self.publisher.ask("stats")
        assert stats["failed"] == 0 and stats["saves"] > 20, stats
        # Hints the publisher gave up while no Redis answered are repaired.
        deadline = time.monotonic() + 10
        while self.publisher.ask("lost")["lost"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.publisher.ask("lost")["lost"] == []

    def stop(self) -> None:
        self.page.close()
        self.publisher.stop()


def position(client, key: str) -> tuple[str, int]:
    """The (epoch, seq) a Redis keeps in a position key."""
    epoch, seq = client.hmget(key, "e", "s")
    return epoch.decode(), int(seq)


def aof_file(redis: RedisServer):
    """The AOF file Redis appends to (Redis 7: the last incr file of appendonlydir)."""
    return sorted((redis.directory / "appendonlydir").glob("*.incr.aof"))[-1]


@pytest.mark.parametrize("restore", ["rdb", "aof-everysec"])
def test_a_redis_restored_older_than_what_pages_saw_heals_them_once_and_drops_no_hint(
    browser, start_daphne, start_redis, database, log_dir, restore
):
    persistence = ("--appendonly", "yes", "--appendfsync", "everysec") if "aof" in restore else ()
    redis = start_redis(*persistence)
    daphne = start_daphne(redis.url)
    watching = Watching(
        browser, daphne.url, log_dir, project_env(**database.env, REDIS_URL=redis.url)
    )
    key = f"asgi:pushgateway:position:{watching.channels['probe']}"
    try:
        with redis.client() as client:
            client.save()  # the snapshot (or, for the AOF, the last fsync'd state)...
        disk = aof_file(redis).stat().st_size if "aof" in restore else None
        watching.probe()
        watching.probe()  # ...misses these, which the page saw
        with redis.client() as client:
            seen = position(client, key)
        redis.stop(kill=True)  # under the stream of saves
        if disk is not None:  # the machine went down too: what was not fsync'd is gone
            with aof_file(redis).open("r+b") as aof:
                aof.truncate(disk)
        redis.start()
        event = time.time()
        with redis.client() as client:
            back = position(client, key)
        assert back[0] == seen[0] and back[1] < seen[1]  # the same epoch, older
        watching.check_healed(event)
    finally:
        watching.stop()


def test_a_sentinel_failover_to_a_replica_that_lagged_heals_pages_once_and_drops_no_hint(
    browser, start_daphne, sentinel_redis, database, log_dir
):
    # The project's own settings on Sentinel, as `REDIS_SENTINELS=... ./dev demo` runs.
    daphne = start_daphne(None, **sentinel_redis.env)
    watching = Watching(
        browser, daphne.url, log_dir, project_env(**database.env, **sentinel_redis.env)
    )
    key = f"asgi:pushgateway:position:{watching.channels['probe']}"
    poster, watcher = browser.new_page(), browser.new_page()
    try:
        event_url = new_event(poster, daphne.url)
        watcher.goto(event_url)  # the demo, in a second tab
        expect(watcher.locator("#push-state")).to_have_attribute("data-state", "connected")
        with sentinel_redis.primary.client() as client:
            before = position(client, key)

        def lagging(replica):
            return position(replica, key)

        behind = sentinel_redis.fail_over_lagging(
            meanwhile=lambda: (watching.probe(), watching.probe()), peek=lagging
        )
        event = time.time()
        assert behind == before  # the promoted replica never saw the last two hints
        watching.check_healed(event)
        post_comment(poster, event_url, "Saved after the failover")
        expect(watcher.locator("#comments li", has_text="after the failover")).to_have_count(1)
    finally:
        watching.stop()
        poster.close()
        watcher.close()
