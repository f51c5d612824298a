"""The Fanout backend against a local stand-in for the hosted publish API."""

import base64
import json
import socket
import time

import jwt
import pytest
from django.db import transaction

from demo.models import Event
from pushgateway import publish
from pushgateway.backends import get_backend
from pushgateway.backends.fanout import FanoutBackend
from tests.fake_fanout import FakeFanout
from tests.servers import run_python

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


def test_grip_mode_posts_ws_message_items_with_jwt(grip, fanout):
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
    scheme, token = request["headers"]["Authorization"].split()
    claims = jwt.decode(token, base64.b64decode(REALM_KEY), algorithms=["HS256"])
    assert scheme == "Bearer" and claims["iss"] == "abc" and claims["exp"] > time.time()


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


def test_checks(settings):
    from pushgateway.checks import check_settings

    def ids(options):
        settings.PUSHGATEWAY = {
            "BACKEND": "pushgateway.backends.fanout.FanoutBackend",
            "OPTIONS": options,
        }
        return [m.id for m in check_settings()]

    assert ids({"GRIP_URL": "http://127.0.0.1:5561?key=k&verify-iss=pushpin"}) == []
    assert ids({"REALM": "r", "REALM_KEY": REALM_KEY}) == []
    assert ids({}) == ["pushgateway.E006"]
    assert ids({"GRIP_URL": "http://x?key=k", "REALM": "r"}) == ["pushgateway.E006"]
    assert ids({"REALM": "r"}) == ["pushgateway.E006"]
    assert ids({"REALM": "r", "REALM_KEY": "not base64!"}) == ["pushgateway.E007"]
    assert ids({"GRIP_URL": "ftp://x?key=k"}) == ["pushgateway.E007"]
    assert ids({"GRIP_URL": "http://127.0.0.1:5561"}) == ["pushgateway.E008"]


def _message(channel, data=None):
    from pushgateway.message import Message

    return Message(channel, data)
