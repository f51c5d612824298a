"""The Fanout backends (GRIP and legacy realm) against a local stand-in for the hosted
publish API."""

import base64
import json
import os
import re
import socket
import time

import jwt
import pytest
from django.db import transaction

from demo.models import Event
from pushgateway import publish
from pushgateway.backends import get_backend, httpclient
from pushgateway.backends.fanout import FanoutBackend
from pushgateway.backends.grip import GripBackend
from pushgateway.backends.realm import RealmBackend, channel_name, realm_channel
from pushgateway.constants import CHANNEL_RE
from tests.support.fake_fanout import FakeFanout
from tests.support.hints import registered_as
from tests.support.servers import run_python

REALM_KEY = base64.b64encode(b"realm-secret-of-32-bytes-or-more!").decode()


@pytest.fixture
def fanout():
    server = FakeFanout()
    yield server
    server.stop()


@pytest.fixture
def grip(settings, fanout):
    """The Fanout backend in GRIP mode (JWT auth), publishing to the stand-in."""
    settings.PUSHGATEWAY = {
        "BACKEND": "pushgateway.backends.fanout.FanoutBackend",
        "OPTIONS": {
            "GRIP_URL": f"{fanout.url}/service/abc?iss=abc&key=base64:{REALM_KEY}",
            "BACKOFF_FACTOR": 0.1,
            "TIMEOUT": 0.5,
        },
    }
    yield get_backend()
    get_backend().close()


def test_grip_mode_posts_ws_message_and_http_stream_items_with_jwt(grip, fanout):
    publish("comments-7", {"model": "demo.comment", "pk": "1", "action": "created"})
    assert grip.flush(5)
    [request] = fanout.requests
    assert request["path"] == "/service/abc/publish/"
    [item] = request["json"]["items"]
    assert item["channel"] == "comments-7"
    frame = json.loads(item["formats"]["ws-message"]["content"])
    assert frame["type"] == "message" and frame["channel"] == "comments-7"
    assert frame["data"] == {"model": "demo.comment", "pk": "1", "action": "created"}
    assert frame["position"]["seq"] == 1
    # The same frame for streams held with Grip-Hold: stream, as one Server-Sent Event.
    assert item["formats"]["http-stream"]["content"] == f"data: {frame_text(item)}\n\n"
    scheme, token = request["headers"]["Authorization"].split()
    claims = jwt.decode(token, base64.b64decode(REALM_KEY), algorithms=["HS256"])
    assert scheme == "Bearer" and claims["iss"] == "abc" and claims["exp"] > time.time()


def frame_text(item):
    return item["formats"]["ws-message"]["content"]


def test_grip_url_key_without_iss_is_a_bearer_token(settings, fanout):
    backend = FanoutBackend(GRIP_URL=f"{fanout.url}?key=fastly-api-token")
    backend.send_messages([_message("a")])
    assert backend.flush(5)
    assert fanout.requests[0]["path"] == "/publish/"
    assert fanout.requests[0]["headers"]["Authorization"] == "Bearer fastly-api-token"
    backend.close()


def test_realm_mode_posts_json_object_items_signed_with_the_realm_key(fanout):
    backend = FanoutBackend(REALM="myrealm", REALM_KEY=REALM_KEY, REALM_URL=fanout.url + "/realm/")
    message = _message("events", {"pk": "3"})
    backend.send_messages([message])
    assert backend.flush(5)
    [request] = fanout.requests
    assert request["path"] == "/realm/myrealm/publish/"
    assert request["json"] == {
        "items": [
            {
                "channel": "events",
                "formats": {
                    "json-object": {
                        "type": "message",
                        "channel": "events",
                        "id": message.id,
                        "data": {"pk": "3"},
                        "position": backend.read_positions(["events"])["events"]._asdict(),
                    }
                },
            }
        ]
    }
    token = request["headers"]["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, base64.b64decode(REALM_KEY), algorithms=["HS256"])
    assert claims["iss"] == "myrealm"
    backend.close()


def test_positions_advance_once_per_hint_however_many_attempts_it_takes(grip, fanout):
    fanout.mode, fanout.failures = "fail", 2
    publish("comments-9", 1)
    publish("comments-9", 2)
    assert grip.flush(10)
    delivered = [
        json.loads(item["formats"]["ws-message"]["content"])
        for request in fanout.requests
        for item in request["json"]["items"]
    ]
    # Every attempt carries the same positions: retries do not skip numbers.
    assert {(f["data"], f["position"]["seq"]) for f in delivered} == {(1, 1), (2, 2)}
    assert grip.read_positions(["comments-9"])["comments-9"].seq == 2


def test_a_hint_dropped_while_the_endpoint_is_down_becomes_a_resync_when_it_is_back(grip, fanout):
    fanout.mode, fanout.failures, fanout.fail_status = "fail", 10**6, 503
    publish("comments-3", {"pk": "1"})
    assert grip.flush(10)
    assert grip.stats["failed"] == 1  # given up after its retries
    time.sleep(1.5)  # the sender keeps trying to tell the channel's pages meanwhile
    fanout.failures = 0
    recovered = time.monotonic()
    deadline = recovered + 10
    while time.monotonic() < deadline and not fanout.published(type="resync"):
        time.sleep(0.05)
    [resync] = fanout.published(type="resync")
    assert resync["at"] - recovered < 5
    assert resync["frame"] == {
        "type": "resync",
        "channel": "comments-3",
        "position": grip.read_positions(["comments-3"])["comments-3"]._asdict(),
    }
    while grip.stats["repaired"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # counted once the resync request has returned
    assert grip.stats["repaired"] == 1


def test_server_errors_are_retried_with_backoff(grip, fanout):
    fanout.mode, fanout.failures = "fail", 2
    publish("a", 1)
    assert grip.flush(10)
    assert len(fanout.requests) == 3
    gaps = [b["at"] - a["at"] for a, b in zip(fanout.requests, fanout.requests[1:], strict=False)]
    assert gaps[1] >= 0.2  # the second retry waited 2 x 0.1 s; the first went at once
    assert gaps[1] > gaps[0]
    assert grip.stats["sent"] == 1 and grip.stats["retries"] == 2


def test_retries_run_out_and_the_hint_is_counted_and_logged(grip, fanout, caplog):
    fanout.mode, fanout.failures = "fail", 10
    publish("a", 1)
    assert grip.flush(10)
    assert len(fanout.requests) == 4  # one attempt and three retries
    assert grip.stats["failed"] == 1
    assert "gave up on 1 hint(s) after 4 attempts: HTTP 500" in caplog.text


def test_client_errors_are_not_retried(grip, fanout, caplog):
    fanout.mode, fanout.failures, fanout.fail_status = "fail", 10, 403
    publish("a", 1)
    assert grip.flush(10)
    assert len(fanout.requests) == 1
    assert grip.stats["failed"] == 1
    assert "HTTP 403" in caplog.text


def test_a_hanging_endpoint_times_out_each_attempt(grip, fanout):
    fanout.mode = "hang"
    publish("a", 1)
    started = time.monotonic()
    assert grip.flush(10)
    assert len(fanout.requests) == 4
    assert grip.stats["failed"] == 1
    assert time.monotonic() - started < 8  # 4 attempts of 0.5 s and backoff; not 30 s


def test_a_refused_connection_is_retried_then_dropped(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    backend = FanoutBackend(GRIP_URL=f"http://127.0.0.1:{port}?key=k", BACKOFF_FACTOR=0.01)
    backend.send_messages([_message("a")])
    assert backend.flush(10)
    assert backend.stats["retries"] == 3 and backend.stats["failed"] == 1
    backend.close()


def test_queue_is_bounded_while_the_endpoint_hangs(fanout, caplog):
    fanout.mode = "hang"
    backend = FanoutBackend(GRIP_URL=f"{fanout.url}?key=k", QUEUE_SIZE=5, TIMEOUT=5)
    backend.send_messages([_message("first")])
    deadline = time.monotonic() + 5
    while not fanout.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    backend.send_messages([_message(f"m{i}") for i in range(20)])
    assert backend.stats["dropped"] == 15  # the in-flight one plus five queued are kept
    assert "queue full (5)" in caplog.text
    fanout.released.set()
    assert backend.flush(10)
    backend.close()


@pytest.mark.django_db(transaction=True)
def test_save_returns_at_once_while_the_endpoint_hangs(grip, fanout):
    fanout.mode = "hang"
    started = time.monotonic()
    for i in range(20):
        with transaction.atomic():
            Event.objects.create(title=f"saved while Fanout hangs {i}")
    elapsed = time.monotonic() - started
    assert Event.objects.filter(title__startswith="saved while").count() == 20
    assert elapsed < 2  # one attempt alone would hang 0.5 s; twenty saves would take 10 s+
    assert grip.stats["queued"] == 40
    fanout.mode = "ok"  # let the queued hints go, so teardown need not wait them out
    fanout.released.set()


def test_pending_hints_are_flushed_when_the_interpreter_exits(fanout):
    code = "import pushgateway; pushgateway.publish('bye', 1)"
    env = {"PUSHGATEWAY_BACKEND": "fanout", "GRIP_URL": f"{fanout.url}?key=k"}
    result = run_python(code, None, env=env)
    assert result.returncode == 0, result.stderr
    [request] = fanout.requests
    assert request["json"]["items"][0]["channel"] == "bye"


def test_fanout_backend_builds_the_backend_its_options_are_for(fanout):
    grip = FanoutBackend(GRIP_URL=f"{fanout.url}?key=k")
    realm = FanoutBackend(REALM="r", REALM_KEY=REALM_KEY, REALM_URL=fanout.url)
    assert type(grip) is GripBackend and type(realm) is RealmBackend
    assert grip.client_config() == {"transport": "auto"}
    assert realm.client_config()["transport"] == "faye"
    grip.close()
    realm.close()


@pytest.mark.parametrize(
    ("backend", "options"),
    [
        ("grip.GripBackend", {"GRIP_URL": "{url}?key=k"}),
        ("realm.RealmBackend", {"REALM": "r", "REALM_KEY": REALM_KEY, "REALM_URL": "{url}"}),
    ],
)
def test_each_fanout_backend_works_by_its_own_dotted_path(settings, fanout, backend, options):
    settings.PUSHGATEWAY = {
        "BACKEND": f"pushgateway.backends.{backend}",
        "OPTIONS": {k: v.format(url=fanout.url) for k, v in options.items()},
    }
    publish("comments-5", {"pk": "5"})
    assert get_backend().flush(5)
    [published] = fanout.published()
    assert published["frame"]["data"] == {"pk": "5"}
    get_backend().close()


def test_batches_share_one_kept_alive_connection(grip, fanout):
    for n in range(3):
        publish("comments-1", n)
        assert grip.flush(5)
    assert [r["json"]["items"][0]["channel"] for r in fanout.requests] == ["comments-1"] * 3
    assert len({r["client_port"] for r in fanout.requests}) == 1  # no new TCP/TLS handshake


def test_a_429_is_retried_after_the_time_the_service_asks_for(grip, fanout):
    fanout.mode, fanout.failures, fanout.fail_status, fanout.retry_after = "fail", 1, 429, "1"
    publish("a", 1)
    assert grip.flush(10)
    first, second = fanout.requests
    assert (first["status"], second["status"]) == (429, 200)
    assert second["at"] - first["at"] >= 1  # not the 0 s a first retry waits otherwise
    assert grip.stats["sent"] == 1 and grip.stats["retries"] == 1


def test_a_long_retry_after_is_cut_to_the_cap(monkeypatch, fanout):
    monkeypatch.setattr(httpclient, "RETRY_AFTER_MAX", 1)
    backend = GripBackend(GRIP_URL=f"{fanout.url}?key=k")
    fanout.mode, fanout.failures, fanout.fail_status, fanout.retry_after = "fail", 1, 503, "3600"
    backend.send_messages([_message("a")])
    assert backend.flush(10)  # not an hour
    first, second = fanout.requests
    assert 1 <= second["at"] - first["at"] < 3
    backend.close()


def hold_sender(fanout, backend):
    """Keep the sender busy for a second (a 503 with Retry-After: 1), so that what is sent
    meanwhile goes out in one batch."""
    fanout.mode, fanout.failures, fanout.fail_status, fanout.retry_after = "fail", 1, 503, "1"
    backend.send_messages([_message("hold")])
    deadline = time.monotonic() + 5
    while not fanout.requests and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_refused_item_is_dropped_alone_and_the_rest_of_its_batch_delivered(grip, fanout, caplog):
    hold_sender(fanout, grip)
    fanout.refuse = {"bad"}
    channels = [f"c{n}" for n in range(6)] + ["bad"] + [f"c{n}" for n in range(6, 9)]
    grip.send_messages([_message(c, c) for c in channels])
    assert grip.flush(10)
    batches = fanout.requests[2:]
    assert len(batches[0]["json"]["items"]) == 10  # the batch as a whole was refused first
    delivered = fanout.published()[1:]
    assert [d["frame"]["data"] for d in delivered] == [c for c in channels if c != "bad"]
    # Posted two or three times while the refused one was looked for, advanced once.
    assert {d["frame"]["position"]["seq"] for d in delivered} == {1}
    assert len(batches) <= 8  # found by halving, not item by item
    assert grip.stats["sent"] == 10 and grip.stats["failed"] == 1
    assert "the service refused 1 hint(s) on bad: HTTP 400" in caplog.text
    assert "invalid item on bad" in caplog.text


def test_lost_channels_whose_resync_is_refused_are_given_up_the_others_told(grip, fanout):
    fanout.mode, fanout.failures, fanout.fail_status = "fail", 10**6, 503
    grip.send_messages([_message("comments-1"), _message("bad")])
    assert grip.flush(10)
    assert grip.sender.lost == ["bad", "comments-1"]
    fanout.refuse, fanout.failures = {"bad"}, 0
    deadline = time.monotonic() + 10
    while grip.sender.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert grip.sender.lost == []
    assert [p["frame"]["channel"] for p in fanout.published(type="resync")] == ["comments-1"]
    assert grip.stats["repaired"] == 1 and grip.stats["unrepairable"] == 1
    requests = len(fanout.requests)
    time.sleep(2.5)  # the refused resync is not tried again and again
    assert len(fanout.requests) == requests


def test_realm_mode_publishes_dotted_channels_on_bayeux_names(fanout):
    backend = RealmBackend(REALM="r", REALM_KEY=REALM_KEY, REALM_URL=fanout.url)
    backend.send_messages([_message("demo.comment.42", {"pk": "42"})])
    assert backend.flush(5)
    [published] = fanout.published()
    # Faye subscribes to "/demo~comment~42"; the frame names the channel as pages know it.
    assert published["channel"] == "demo~comment~42"
    assert published["frame"]["channel"] == "demo.comment.42"
    backend.close()


@pytest.mark.django_db(transaction=True)
def test_realm_mode_refuses_private_channels_instead_of_publishing_them(settings, fanout, caplog):
    from pushgateway.exceptions import PrivateChannelUnsupported

    options = {"REALM": "r", "REALM_KEY": REALM_KEY, "REALM_URL": fanout.url}
    settings.PUSHGATEWAY = {
        "BACKEND": "pushgateway.backends.realm.RealmBackend",
        "OPTIONS": options,
    }
    refused = pytest.raises(PrivateChannelUnsupported, match="anyone can subscribe")
    with refused:
        publish("private-invoices-4", {"pk": "1"})
    with refused, transaction.atomic():  # at the call, not at the commit
        publish("private-invoices-4", {"pk": "1"})
    with refused:
        get_backend().send_messages([_message("private-invoices-4"), _message("public")])
    # A save of a model whose channels() names a private channel goes on, logged.

    with registered_as(Event, channels=lambda event: ["private-events"]):
        Event.objects.create(title="Secret party")
    assert "cannot keep a channel private" in caplog.text
    publish("public")
    assert get_backend().flush(5)
    assert [p["channel"] for p in fanout.published()] == ["public"]
    get_backend().close()


@pytest.mark.parametrize("name", ["demo.comment.42", "a", ".a..b.", "x-_y.Z9", "a" * 100])
def test_realm_channel_names_map_to_bayeux_and_back(name):
    assert CHANNEL_RE.fullmatch(name)
    bayeux = "/" + realm_channel(name)
    # Faye's own grammar for a channel name (faye-browser 1.x, Grammar.CHANNEL_NAME).
    segment = r"[A-Za-z0-9\-_!~()$@]+"
    assert re.fullmatch(rf"/{segment}(/{segment})*", bayeux)
    assert channel_name(bayeux) == channel_name(realm_channel(name)) == name


def test_a_forked_child_does_not_deliver_the_hints_its_parent_queued(fanout):
    backend = GripBackend(GRIP_URL=f"{fanout.url}?key=k", TIMEOUT=5)
    fanout.mode = "hang"  # the parent's sender waits on this request...
    backend.send_messages([_message("held")])
    deadline = time.monotonic() + 5
    while not fanout.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    fanout.mode = "ok"
    backend.send_messages([_message("queued-1"), _message("queued-2")])  # ...these wait
    assert _in_child(lambda: backend.send_messages([_message("child")]) or backend) == 0
    assert [_channels(r) for r in fanout.requests] == [["held"], ["child"]]
    fanout.released.set()  # the parent's sender goes on with its own hints, once each
    assert backend.flush(15)
    delivered = [c for r in fanout.requests if r.get("status") == 200 for c in _channels(r)]
    assert sorted(delivered) == ["child", "held", "queued-1", "queued-2"]
    backend.close()


def test_a_forked_child_opens_its_own_connection(fanout):
    backend = GripBackend(GRIP_URL=f"{fanout.url}?key=k")
    backend.send_messages([_message("before")])
    assert backend.flush(5)  # the parent's connection now waits, kept alive, in its pool
    assert _in_child(lambda: backend.send_messages([_message("child")]) or backend) == 0
    backend.send_messages([_message("after")])
    assert backend.flush(5)
    before, child, after = fanout.requests
    assert [_channels(r) for r in (before, child, after)] == [["before"], ["child"], ["after"]]
    assert child["client_port"] != before["client_port"] == after["client_port"]
    assert after["status"] == 200
    backend.close()


def _in_child(work) -> int:
    """Run `work` in a forked child; its backend's flush decides the exit code."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 3
        try:
            backend = work()
            code = 0 if backend.flush(5) and backend.stats["sent"] == 1 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _channels(request) -> list[str]:
    return [item["channel"] for item in request["json"]["items"]]


@pytest.mark.parametrize("backend", ["fanout.FanoutBackend", "grip.GripBackend"])
def test_checks_of_grip_mode(settings, backend):
    def ids(options):
        return _check_ids(settings, f"pushgateway.backends.{backend}", options)

    assert ids({"GRIP_URL": "http://127.0.0.1:5561?key=k&verify-iss=pushpin"}) == []
    assert ids({}) == ["pushgateway.E006"]
    assert ids({"GRIP_URL": "ftp://x?key=k"}) == ["pushgateway.E007"]
    assert ids({"GRIP_URL": "http://127.0.0.1:5561"}) == ["pushgateway.E008"]
    grip = "https://x?key=k"
    assert ids({"GRIP_URL": grip, "POSITIONS": "redis://127.0.0.1:6379/0"}) == []
    assert ids({"GRIP_URL": grip, "POSITIONS": "127.0.0.1:6379"}) == ["pushgateway.E009"]
    # A primary under Redis Sentinel, given as channels_redis gives it.
    sentinel = {"sentinels": [("127.0.0.1", 26379)], "master_name": "main"}
    assert ids({"GRIP_URL": grip, "POSITIONS": sentinel}) == []
    assert ids({"GRIP_URL": grip, "POSITIONS": {"master_name": "m"}}) == ["pushgateway.E009"]


@pytest.mark.parametrize("backend", ["fanout.FanoutBackend", "realm.RealmBackend"])
def test_checks_of_realm_mode(settings, backend):
    def ids(options):
        return _check_ids(settings, f"pushgateway.backends.{backend}", options)

    assert ids({"REALM": "r", "REALM_KEY": REALM_KEY}) == []
    assert ids({"REALM": "r"}) == ["pushgateway.E006"]
    assert ids({"REALM": "r", "REALM_KEY": "not base64!"}) == ["pushgateway.E007"]
    assert ids({"REALM": "r", "REALM_KEY": REALM_KEY, "POSITIONS": True}) == ["pushgateway.E009"]
    # Anyone can subscribe to a realm's Bayeux channels by name: no private channels there.
    assert ids({"REALM": "r", "REALM_KEY": REALM_KEY, "PRIVATE": True}) == ["pushgateway.E011"]


def test_a_model_registered_private_is_an_error_in_realm_mode(settings):
    from pushgateway.checks import check_settings

    settings.PUSHGATEWAY = {
        "BACKEND": "pushgateway.backends.fanout.FanoutBackend",
        "OPTIONS": {"REALM": "r", "REALM_KEY": REALM_KEY},
    }
    with registered_as(Event, channels=lambda event: ["events"], private=True):
        [error] = check_settings()
    assert error.id == "pushgateway.E011" and "demo.Event (registered private)" in error.msg


def test_checks_of_the_fanout_backend_name_what_it_cannot_choose_between(settings):
    def ids(options):
        return _check_ids(settings, "pushgateway.backends.fanout.FanoutBackend", options)

    assert ids({}) == ["pushgateway.E006"]
    assert ids({"GRIP_URL": "http://x?key=k", "REALM": "r"}) == ["pushgateway.E006"]
    # Options of the other mode are unknown to the backend that is chosen.
    assert ids({"GRIP_URL": "https://x?key=k", "FAYE_URL": "https://x"}) == ["pushgateway.E004"]


@pytest.mark.parametrize(
    ("grip_url", "warned"),
    [
        ("http://pushpin.internal:5561?key=k&verify-iss=pushpin", True),  # the case
        ("http://10.0.0.5:5561/?key=base64:a2V5", True),
        ("http://[2001:db8::1]:5561?key=k", True),
        ("http://127.0.0.1:5561?key=k&verify-iss=pushpin", False),  # loopback
        ("http://127.8.9.1:5561?key=k", False),
        ("http://[::1]:5561?key=k", False),
        ("http://localhost:5561?key=k", False),
        ("http://pushpin.internal:5561?key=k&iss=pushpin", False),  # a JWT, not the key
        ("https://api.fastly.com/service/S?key=token&verify-iss=fastly:S", False),
        ("http://pushpin.internal:5561?verify-key=k", False),  # nothing sent
    ],
)
def test_a_grip_key_sent_as_a_bearer_in_clear_text_is_a_warning(settings, grip_url, warned):
    from pushgateway.checks import check_settings

    settings.PUSHGATEWAY = {
        "BACKEND": "pushgateway.backends.fanout.FanoutBackend",
        "OPTIONS": {"GRIP_URL": grip_url},
    }
    found = [m for m in check_settings() if m.id == "pushgateway.W006"]
    assert len(found) == warned
    if warned:
        assert "bearer token in clear text" in found[0].msg and "iss=" in found[0].hint


def _check_ids(settings, backend, options):
    from pushgateway.checks import check_settings

    settings.PUSHGATEWAY = {"BACKEND": backend, "OPTIONS": options}
    return [m.id for m in check_settings()]


def _message(channel, data=None):
    from pushgateway.message import Message

    return Message(channel, data)
