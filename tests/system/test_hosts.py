"""Faults across hosts: Redis, two daphne servers, a publisher and the clients on hosts of
their own (network namespaces joined by a bridge, tests/support/netns.py), as in a deployment.

The publisher host saves a comment every 0.1 s throughout each test and counts the saves that
fail; the clients host holds sockets to both daphne hosts, on the publisher's channels. Each
test breaks something (a daphne host dies, Redis restarts, the Redis host drops off the
network) and checks what the pages saw and that no save failed.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest

from tests.support.host_clients import Clients, in_order, messages, resyncs
from tests.support.host_publisher import Publisher
from tests.support.netns import HTTP_PORT, REDIS_PORT, NamespacesUnavailable, Network
from tests.support.servers import PYTHON, ROOT, Process, SqliteDatabase

pytestmark = pytest.mark.servers

WEB = ("web1", "web2")
SOCKETS = 10  # per daphne host
# A worker process saving one comment on the event with id `event`, then exiting.
JOB_SAVE = """
from demo.models import Comment
Comment.objects.create(event_id={event}, author="worker", body="saved by a worker")
"""


class Site:
    """Redis, two daphne hosts, a publisher and clients, each on a host of its own."""

    def __init__(self, network: Network, log_dir, tmp_path) -> None:
        self.network = network
        self.log_dir = log_dir
        self.database = tmp_path / "publisher.sqlite3"
        self.redis_url = f"redis://{network['redis'].address}:{REDIS_PORT}/0"
        self.redis: Process | None = None
        self.daphnes: dict[str, Process] = {}
        self.publisher: Publisher | None = None
        self.clients: Clients | None = None

    def env(self, host: str) -> dict:
        # Every host has a database file of its own (a copy): the test is about hints.
        database = self.database
        if host != "publisher":
            database = self.database.with_name(f"{host}.sqlite3")
            if not database.exists():
                database.write_bytes(self.database.read_bytes())
        return self.network[host].env(SQLITE_PATH=str(database), REDIS_URL=self.redis_url)

    def start(self) -> None:
        self.start_redis()
        SqliteDatabase(self.database)
        for name in WEB:
            self.daphnes[name] = self.network[name].start_daphne(self.log_dir, self.env(name))
        self.publisher = Publisher(self.network["publisher"], self.log_dir, self.env("publisher"))
        host = self.network["clients"]
        for name in WEB:
            host.wait_for_port(self.network[name].address, HTTP_PORT)
        servers = {name: f"{self.network[name].address}:{HTTP_PORT}" for name in WEB}
        self.clients = Clients(host, servers, self.channels(), SOCKETS, self.log_dir)
        self.clients.wait_subscribed(WEB, self.channels())

    def channels(self) -> list[str]:
        return [self.publisher.steady, self.publisher.probe, self.publisher.job]

    def start_redis(self) -> None:
        host = self.network["redis"]
        self.redis = host.start_redis(self.log_dir)
        self.network["publisher"].wait_for_port(host.address, REDIS_PORT)

    def stop_redis(self) -> None:
        self.redis.stop()

    def run_python(self, host: str, code: str) -> subprocess.CompletedProcess:
        """Run `code` after django.setup() in a process of this project on `host`."""
        args = [PYTHON, "-c", "import django; django.setup()\n" + code]
        command = self.network[host].command(args)
        return subprocess.run(
            command, cwd=ROOT, env=self.env(host), capture_output=True, text=True, timeout=60
        )

    def stop(self) -> None:
        for part in (self.clients, self.publisher, *self.daphnes.values(), self.redis):
            if part is not None:
                part.stop()

    def assert_no_failed_saves(self, at_least: int) -> dict:
        stats = self.publisher.ask("stats")
        assert stats["failed"] == 0, stats
        assert stats["saves"] >= at_least, stats
        # A save never waited for Redis (a blocking publish would wait out its timeout, 5 s).
        assert stats["max_seconds"] < 2, stats
        return stats


@pytest.fixture
def site(log_dir, tmp_path):
    try:
        network = Network(["redis", *WEB, "publisher", "clients"])
    except NamespacesUnavailable as exc:
        pytest.fail(f"tests/system/test_hosts.py needs hosts of its own: {exc}", pytrace=False)
    site = Site(network, log_dir, tmp_path)
    try:
        site.start()
        yield site
    finally:
        site.stop()
        network.close()


def at_least(count: int) -> Callable[[list[dict]], bool]:
    return lambda frames: len(messages(frames)) >= count


def has_pk(pk: int) -> Callable[[list[dict]], bool]:
    return lambda frames: any(f["data"]["pk"] == str(pk) for f in messages(frames))


def test_hints_saved_on_one_host_reach_clients_on_both_daphne_hosts(site):
    clients, publisher = site.clients, site.publisher
    saved = publisher.save("probe")
    clients.wait(
        "the probe hint on every socket of both hosts",
        lambda: clients.every_socket(WEB, publisher.probe, has_pk(saved["pk"])),
        timeout=5,
    )
    for server in WEB:
        for frames in clients.frames(server, publisher.probe).values():
            [message] = messages(frames)
            assert message["data"] == {"model": "demo.comment", "pk": str(saved["pk"]),
                                       "action": "created"}  # fmt: skip
            assert message["at"] - saved["at"] < 2  # within 2 s, even on a loaded machine

    # The steady saves reach every socket as one stream without a gap.
    since = time.time()
    clients.wait(
        "2 s of steady hints on every socket",
        lambda: clients.every_socket(WEB, publisher.steady, at_least(20), since),
        timeout=15,
    )
    for server in WEB:
        for frames in clients.frames(server, publisher.steady).values():
            assert in_order(frames), frames
    site.assert_no_failed_saves(at_least=20)


def test_a_dead_daphne_host_leaves_the_other_hosts_clients_receiving(site):
    clients, publisher = site.clients, site.publisher
    clients.wait(
        "steady hints on every socket",
        lambda: clients.every_socket(WEB, publisher.steady, at_least(5)),
        timeout=15,
    )
    # web1 dies as a host does: its cable is pulled, then its process is gone, so nothing
    # it held (its Redis subscription, its clients' connections) is ever closed.
    site.network["web1"].link(up=False)
    site.daphnes["web1"].proc.kill()
    died = time.time()

    saved = publisher.save("probe")
    clients.wait(
        "the probe hint on every socket of web2",
        lambda: clients.every_socket(["web2"], publisher.probe, has_pk(saved["pk"])),
        timeout=5,
    )
    clients.wait(
        "3 s of steady hints on every socket of web2 after web1 died",
        lambda: clients.every_socket(["web2"], publisher.steady, at_least(30), since=died),
        timeout=20,
    )
    for frames in clients.frames("web2", publisher.steady).values():
        assert in_order(frames), frames  # not one hint lost across the death of web1
    assert clients.closed("web2") == []
    # The hint saved after web1 died reached none of web1's clients: it really was gone.
    assert clients.every_socket(["web1"], publisher.probe, lambda f: messages(f) == [])
    site.assert_no_failed_saves(at_least=30)


def test_restarting_redis_heals_the_clients_of_both_daphne_hosts(site):
    clients, publisher = site.clients, site.publisher
    watched = (publisher.probe, publisher.job)
    before = [publisher.save("probe"), publisher.save("job")]
    clients.wait(
        "the first hints on every socket",
        lambda: all(
            clients.every_socket(WEB, channel, has_pk(saved["pk"]))
            for channel, saved in zip(watched, before, strict=True)
        ),
        timeout=5,
    )

    site.stop_redis()
    stopped = time.time()
    publisher.save("probe")  # the save succeeds; its hint cannot go out
    # A worker saves a comment and exits: nothing is left to repair its lost hint, so only
    # the daphne hosts can tell their pages.
    worker = site.run_python("publisher", JOB_SAVE.format(event=publisher.events["job"]))
    assert worker.returncode == 0, worker.stderr
    assert "gave up on" in worker.stderr
    clients.wait(  # until the publisher's retries for the probe hint are over
        "the publisher giving up the probe hint (its retries over)",
        lambda: publisher.probe in publisher.ask("lost")["lost"],
        timeout=20,
    )
    site.start_redis()
    back = time.time()

    # Every page on both hosts is told to refetch, with the position to compare...
    healed = clients.wait(
        "a resync on every socket of both hosts",
        lambda: all(
            clients.every_socket(WEB, channel, lambda f: resyncs(f) != [], since=back)
            for channel in watched
        ),
        timeout=10,
    )
    for server in WEB:
        for channel in watched:
            for frames in clients.frames(server, channel, since=stopped).values():
                assert messages(frames) == []  # the hints themselves were lost...
                resync = resyncs(frames)[0]
                assert resync["at"] - back < 5, (resync, back)  # ...and healed within 5 s
                assert isinstance(resync["position"]["epoch"], str), resync
                assert isinstance(resync["position"]["seq"], int), resync
    # ...and later hints arrive as messages again, on the same sockets.
    after = publisher.save("probe")
    clients.wait(
        "the probe hint saved after the restart on every socket",
        lambda: clients.every_socket(WEB, publisher.probe, has_pk(after["pk"]), since=healed),
        timeout=5,
    )
    for server in WEB:
        assert clients.closed(server) == []
    stats = site.assert_no_failed_saves(at_least=20)
    print(f"Redis down {back - stopped:.1f}s, healed {healed - back:.1f}s after, {stats}")


def test_a_redis_host_cut_off_from_the_network_heals_the_clients_of_both_hosts(site):
    # Unlike a stopped Redis, which refuses connections at once, a Redis host whose cable is
    # pulled answers nothing: every call waits out its timeout (5 s).
    clients, publisher = site.clients, site.publisher
    site.network["redis"].link(up=False)
    cut = time.time()
    during = publisher.save("probe")
    time.sleep(12)  # past two of the publisher's attempts, within its four
    site.network["redis"].link(up=True)
    back = time.time()

    # The hint reaches every socket on both hosts (late, or as a resync)...
    def told(frames: list[dict]) -> bool:
        return has_pk(during["pk"])(frames) or resyncs(frames) != []

    healed = clients.wait(
        "the hint saved during the partition on every socket of both hosts",
        lambda: clients.every_socket(WEB, publisher.probe, told, since=cut),
        timeout=20,
    )
    assert healed - back < 10
    # ...and the steady stream flows again on every socket.
    clients.wait(
        "steady hints on every socket after the partition",
        lambda: clients.every_socket(WEB, publisher.steady, at_least(10), since=healed),
        timeout=15,
    )
    for server in WEB:
        assert clients.closed(server) == []
    site.assert_no_failed_saves(at_least=100)
