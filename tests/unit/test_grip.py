"""The WebSocket-over-HTTP endpoint: events in, the same protocol out, Grip-Sig required."""

import json
import subprocess
import sys

import pytest

import pushgateway
from channels_app.websocket_events import encode_events, parse_events
from tests.support.grip import GRIP, sig
from tests.support.servers import ROOT, project_env

# What a project has without the `fanout` extra: none of its packages can be imported.
WITHOUT_FANOUT_EXTRA = """
import sys

class WithoutFanoutExtra:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("jwt", "gripcontrol", "pubcontrol", "urllib3"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, WithoutFanoutExtra())
"""


@pytest.fixture
def post(client, settings):
    settings.PUSHGATEWAY = GRIP

    def post(events, headers=None, grip_sig=None):
        headers = {"Grip-Sig": grip_sig or sig(), "Origin": "http://testserver", **(headers or {})}
        response = client.post(
            "/ws/pushgateway/",
            encode_events(events),
            content_type="application/websocket-events",
            headers=headers,
        )
        return response

    return post


def text(frame):
    return ("TEXT", json.dumps(frame).encode())


def test_events_round_trip():
    events = [("OPEN", None), ("TEXT", b"hello\r\nworld"), ("CLOSE", b"\x03\xe8")]
    assert parse_events(encode_events(events)) == events


def test_open_is_accepted_with_the_grip_extension(post):
    response = post([("OPEN", None)])
    assert response.status_code == 200
    assert response["Content-Type"] == "application/websocket-events"
    assert response["Sec-WebSocket-Extensions"] == "grip"
    assert parse_events(response.content) == [("OPEN", None)]


def test_open_from_a_foreign_origin_is_refused(post):
    assert post([("OPEN", None)], headers={"Origin": "http://evil.example"}).status_code == 403


def test_subscribe_becomes_a_grip_control_message_and_a_prefixed_reply(post):
    response = post([text({"type": "subscribe", "channel": "comments-7"})])
    events = parse_events(response.content)
    assert events[0][1].startswith(b"c:")
    assert json.loads(events[0][1][2:]) == {"type": "subscribe", "channel": "comments-7"}
    kind, content = events[1]
    assert kind == "TEXT" and content.startswith(b"m:")
    assert json.loads(content[2:]) == {
        "type": "subscribed",
        "channel": "comments-7",
        "position": {"epoch": "", "seq": 0},  # nothing published on it yet
        "stale": True,
    }
    assert response["Set-Meta-Subs"] == "comments-7"
    assert response["Set-Meta-Pos"] == "comments-7=.0"


def test_a_later_request_tells_the_page_of_hints_it_may_have_missed(post):
    """Hints go from the publisher through the proxy, never through this view: a hint
    published while the proxy set up the subscription is lost without a trace, so each
    request of the connection (the browser pings soon after subscribing) checks positions."""
    from pushgateway.backends import get_backend

    first = post([text({"type": "subscribe", "channel": "grip-gap"})])
    told = first["Set-Meta-Pos"]
    quiet = post([text({"type": "ping"})], headers={"Meta-Subs": "grip-gap", "Meta-Pos": told})
    assert [json.loads(c[2:])["type"] for _, c in parse_events(quiet.content)] == ["pong"]

    [position] = get_backend().positions.advance(["grip-gap"])  # published meanwhile
    later = post([text({"type": "ping"})], headers={"Meta-Subs": "grip-gap", "Meta-Pos": told})
    frames = [json.loads(c[2:]) for _, c in parse_events(later.content)]
    assert frames == [
        {"type": "pong"},
        {"type": "resync", "channel": "grip-gap", "position": position.as_json()},
    ]
    assert later["Set-Meta-Pos"] == f"grip-gap={position.epoch}.1"


def test_subscriptions_travel_in_meta_headers(post):
    response = post([text({"type": "unsubscribe", "channel": "b"})], headers={"Meta-Subs": "a,b"})
    events = parse_events(response.content)
    assert json.loads(events[0][1][2:]) == {"type": "unsubscribe", "channel": "b"}
    assert response["Set-Meta-Subs"] == "a"


def test_bad_frames_get_the_same_error_frames_and_misbehaviour_closes(post):
    response = post([("TEXT", b"not json")])
    [(kind, content)] = parse_events(response.content)
    assert kind == "TEXT" and json.loads(content[2:])["code"] == "invalid_json"
    assert response["Set-Meta-Errors"] == "1"
    response = post([("TEXT", b"again")], headers={"Meta-Errors": "20"})
    assert parse_events(response.content)[-1] == ("CLOSE", (4008).to_bytes(2, "big"))


def test_private_channels_use_signed_tokens(post):
    token = pushgateway.make_token("private-7")
    ok = post([text({"type": "subscribe", "channel": "private-7", "token": token})])
    assert parse_events(ok.content)[0][1].startswith(b"c:")
    denied = post([text({"type": "subscribe", "channel": "private-8", "token": token})])
    assert json.loads(parse_events(denied.content)[0][1][2:])["code"] == "forbidden"


def test_ping_close_and_malformed_bodies(post, client):
    response = post([("PING", b"x"), ("CLOSE", b"\x03\xe8")])
    assert parse_events(response.content) == [("PONG", b"x"), ("CLOSE", b"\x03\xe8")]
    bad = client.post(
        "/ws/pushgateway/",
        b"TEXT 99\r\nshort\r\n",
        content_type="application/websocket-events",
        headers={"Grip-Sig": sig()},
    )
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "grip_sig",
    [
        sig(key="forged-key-that-is-long-enough-for-hs256"),
        sig(iss="someone"),
        sig(exp=-10),
        "x.y.z",
    ],
)
def test_invalid_grip_sig_is_refused(post, grip_sig):
    response = post([("OPEN", None)], grip_sig=grip_sig)
    assert response.status_code == 403


def test_subscriptions_are_capped_at_pushpins_limit(post):
    subs = [f"c{i}" for i in range(20)]
    headers = {"Meta-Subs": ",".join(subs), "Meta-Pos": ",".join(f"{c}=.0" for c in subs)}
    response = post([text({"type": "subscribe", "channel": "one-more"})], headers=headers)
    [(kind, content)] = parse_events(response.content)
    assert json.loads(content[2:])["code"] == "too_many_subscriptions"
    assert response["Set-Meta-Errors"] == "0"  # a refusal is an answer, not misbehaviour


@pytest.mark.parametrize(
    "body",
    [
        b"TEXT\r\n",  # a TEXT event without content
        b"TEXT zz\r\nab\r\n",
        b"\xff\xfe\r\n",
        b"TEXT 2\r\n\xff\xfe\r\n",
        b"OPEN",
    ],
)
def test_hostile_bodies_get_an_answer_not_a_500(post, client, body):
    response = client.post(
        "/ws/pushgateway/",
        body,
        content_type="application/websocket-events",
        headers={"Grip-Sig": sig(), "Origin": "http://testserver"},
    )
    assert response.status_code in (200, 400)


def test_the_subscribe_budget_travels_between_requests(post, settings):
    """Behind Pushpin every frame may reach another process: the connection's budget of
    subscribes and unsubscribes goes with it in Meta-Churn, like Meta-Errors."""
    settings.PUSHGATEWAY = {**GRIP, "OPTIONS": {**GRIP["OPTIONS"], "SUBSCRIBE_BURST": 2}}
    headers = {}
    for channel in ("b1", "b2"):
        response = post([text({"type": "subscribe", "channel": channel})], headers=headers)
        assert json.loads(parse_events(response.content)[-1][1][2:])["type"] == "subscribed"
        headers = {h: response[f"Set-{h}"] for h in ("Meta-Subs", "Meta-Pos", "Meta-Churn")}
    refused = post([text({"type": "subscribe", "channel": "b3"})], headers=headers)
    [(_, content)] = parse_events(refused.content)
    assert json.loads(content[2:])["code"] == "rate_limited"
    assert refused["Set-Meta-Errors"] == "0"  # a refusal, not misbehaviour
    assert refused["Set-Meta-Subs"] == "b1,b2"
    # A request without the header (a connection's first) starts with a full budget.
    fresh = post([text({"type": "subscribe", "channel": "b3"})])
    assert parse_events(fresh.content)[0][1].startswith(b"c:")


# Kept from fuzzing (tests/integration/test_fuzz.py): Meta-* values that once answered 500.
# The proxy sends back what the view set, but a request that carries a valid Grip-Sig is parsed as
# strictly as client input all the same.
HOSTILE_META = {
    "superscript digit as error count": {"Meta-Errors": "²"},
    "5000-digit error count": {"Meta-Errors": "9" * 5000},
    "superscript digit as seq": {"Meta-Subs": "a", "Meta-Pos": "a=e.²"},
    "5000-digit seq": {"Meta-Subs": "a", "Meta-Pos": "a=e." + "9" * 5000},
    "seq past 2**53": {"Meta-Subs": "a", "Meta-Pos": "a=e.9007199254740993"},
    "budget that is not a number": {"Meta-Churn": "nan@inf"},
}


@pytest.mark.parametrize("headers", HOSTILE_META.values(), ids=HOSTILE_META.keys())
def test_hostile_meta_headers_get_an_answer_not_a_500(post, headers):
    response = post([text({"type": "ping"})], headers=headers)
    assert response.status_code == 200
    assert json.loads(parse_events(response.content)[0][1][2:]) == {"type": "pong"}


def test_names_in_meta_subs_that_are_not_channels_are_dropped(post):
    response = post([text({"type": "ping"})], headers={"Meta-Subs": "a,not valid,ü,,b"})
    assert response["Set-Meta-Subs"] == "a,b"


def test_events_after_a_close_get_no_answer(post):
    garbage = [("TEXT", b"garbage")] * 3
    response = post(
        garbage + [text({"type": "subscribe", "channel": "late"})], headers={"Meta-Errors": "19"}
    )
    events = parse_events(response.content)
    assert events[-1] == ("CLOSE", (4008).to_bytes(2, "big"))
    assert b"late" not in response.content and response["Set-Meta-Subs"] == ""


def test_a_project_without_the_fanout_extra_can_include_the_http_routes():
    # README installs [redis,daphne] and includes channels_app.urls (with the GRIP view).
    script = WITHOUT_FANOUT_EXTRA + (
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "from django.urls import include, path\n"
        "include('channels_app.urls')\n"
        "call_command('check')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
