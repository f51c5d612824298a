"""The WebSocket-over-HTTP endpoint: events in, the same protocol out, Grip-Sig required."""

import json
import subprocess
import sys
import time

import pytest
from django.core import signing

import pushgateway
from channels_app.gripstate import ProxyState, dump_state, load_state
from channels_app.websocket_events import encode_events, parse_events
from pushgateway.protocol import Position
from pushgateway.tokens import DEFAULT_TOKEN_MAX_AGE
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
        headers = {
            "Grip-Sig": grip_sig or sig(),
            "Origin": "http://testserver",
            "Connection-Id": CONNECTION,
            **(headers or {}),
        }
        response = client.post(
            "/ws/pushgateway/",
            encode_events(events),
            content_type="application/websocket-events",
            headers=headers,
        )
        return response

    return post


CONNECTION = "conn-1"


def text(frame):
    return ("TEXT", json.dumps(frame).encode())


def state_of(response, connection=CONNECTION):
    """The state the view gave the proxy to keep (it verifies: the view signed it)."""
    return load_state(response["Set-Meta-State"], connection)


def state(connection=CONNECTION, **fields):
    """A Meta-State header as the view would have set it."""
    return {"Meta-State": dump_state(ProxyState(**fields), connection)}


def kept(response):
    """The headers the proxy sends on the connection's next request."""
    return {"Meta-State": response["Set-Meta-State"]}


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
    assert state_of(response).subscriptions == {"comments-7": Position("", 0)}


def test_a_later_request_tells_the_page_of_hints_it_may_have_missed(post):
    """Hints go from the publisher through the proxy, never through this view: a hint
    published while the proxy set up the subscription is lost without a trace, so each
    request of the connection (the browser pings soon after subscribing) checks positions."""
    from pushgateway.backends import get_backend

    first = post([text({"type": "subscribe", "channel": "grip-gap"})])
    quiet = post([text({"type": "ping"})], headers=kept(first))
    assert [json.loads(c[2:])["type"] for _, c in parse_events(quiet.content)] == ["pong"]

    [position] = get_backend().positions.advance(["grip-gap"])  # published meanwhile
    later = post([text({"type": "ping"})], headers=kept(first))
    frames = [json.loads(c[2:]) for _, c in parse_events(later.content)]
    assert frames == [
        {"type": "pong"},
        {"type": "resync", "channel": "grip-gap", "position": position.as_json()},
    ]
    assert state_of(later).subscriptions == {"grip-gap": position}


def test_subscriptions_travel_in_the_signed_state(post):
    headers = state(subscriptions={"a": Position("", 0), "b": Position("e", 3)})
    response = post([text({"type": "unsubscribe", "channel": "b"})], headers=headers)
    events = parse_events(response.content)
    assert json.loads(events[0][1][2:]) == {"type": "unsubscribe", "channel": "b"}
    assert state_of(response).subscriptions == {"a": Position("", 0)}


def test_bad_frames_get_the_same_error_frames_and_misbehaviour_closes(post):
    response = post([("TEXT", b"not json")])
    [(kind, content)] = parse_events(response.content)
    assert kind == "TEXT" and json.loads(content[2:])["code"] == "invalid_json"
    assert state_of(response).errors == 1
    response = post([("TEXT", b"again")], headers=state(errors=20))
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
    headers = state(subscriptions={f"c{i}": Position("", 0) for i in range(20)})
    response = post([text({"type": "subscribe", "channel": "one-more"})], headers=headers)
    [(kind, content)] = parse_events(response.content)
    assert json.loads(content[2:])["code"] == "too_many_subscriptions"
    assert state_of(response).errors == 0  # a refusal is an answer, not misbehaviour


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
    subscribes and unsubscribes goes with it in its state, like its error count."""
    settings.PUSHGATEWAY = {**GRIP, "OPTIONS": {**GRIP["OPTIONS"], "SUBSCRIBE_BURST": 2}}
    headers = {}
    for channel in ("b1", "b2"):
        response = post([text({"type": "subscribe", "channel": channel})], headers=headers)
        assert json.loads(parse_events(response.content)[-1][1][2:])["type"] == "subscribed"
        headers = kept(response)
    refused = post([text({"type": "subscribe", "channel": "b3"})], headers=headers)
    [(_, content)] = parse_events(refused.content)
    assert json.loads(content[2:])["code"] == "rate_limited"
    assert state_of(refused).errors == 0  # a refusal, not misbehaviour
    assert set(state_of(refused).subscriptions) == {"b1", "b2"}
    # A request without a state (a connection's first) starts with a full budget.
    fresh = post([text({"type": "subscribe", "channel": "b3"})])
    assert parse_events(fresh.content)[0][1].startswith(b"c:")


# Kept from fuzzing (tests/integration/test_fuzz.py): values once read from plain Meta-*
# headers that answered 500 (a superscript digit, 5,000 digits, a seq past 2**53, "nan@inf"),
# now inside a state the view signs; and states it did not sign (issue 16).
def foreign(payload, **kwargs):
    from django.core import signing

    return {"Meta-State": signing.dumps(payload, **kwargs)}


FORGED_STATES = {
    "garbage": {"Meta-State": "not a signed value"},
    "5000 digits": {"Meta-State": "9" * 5000},
    "over the length cap": {"Meta-State": "x" * 9000},
    "signed for another connection": state("conn-2", subscriptions={"private-a": None}),
    "signed with another salt": foreign({"i": CONNECTION, "s": {"private-a": None}}),
    "signed with another key": foreign(
        {"i": CONNECTION, "s": {"private-a": None}},
        key="another-key-entirely",
        salt="pushgateway.websocket-over-http.state",
    ),
}


@pytest.mark.parametrize("headers", FORGED_STATES.values(), ids=FORGED_STATES.keys())
def test_a_state_the_view_did_not_sign_for_the_connection_closes_it(post, headers):
    response = post([text({"type": "ping"})], headers=headers)
    assert response.status_code == 200
    [(kind, content)] = parse_events(response.content)
    assert (kind, content[:2]) == ("CLOSE", (4008).to_bytes(2, "big"))
    assert b"private-a" not in response.content and "Set-Meta-State" not in response


MALFORMED_BUT_SIGNED = {
    "superscript digit as error count": {"e": "²"},
    "5000-digit error count": {"e": int("9" * 100)},
    "superscript digit as seq": {"s": {"a": ["e", "²"]}},
    "seq past 2**53": {"s": {"a": ["e", 2**53 + 1]}},
    "a name that is not a channel": {"s": {"not valid": None}},
    "more subscriptions than the proxy's limit": {"s": {f"c{i}": None for i in range(21)}},
    "budget that is not a number": {"b": [float("nan"), float("inf")]},
    "a token for a channel not subscribed": {"t": {"private-a": "x"}},
    "a token for a public channel": {"s": {"a": None}, "t": {"a": "x"}},
    "a token that is not a string": {"s": {"private-a": None}, "t": {"private-a": 5}},
}


@pytest.mark.parametrize("fields", MALFORMED_BUT_SIGNED.values(), ids=MALFORMED_BUT_SIGNED.keys())
def test_a_malformed_state_is_refused_even_when_signed(post, fields):
    payload = {"i": CONNECTION, "s": {}, "e": 0, "b": None, **fields}
    headers = foreign(payload, salt="pushgateway.websocket-over-http.state", compress=True)
    response = post([text({"type": "ping"})], headers=headers)
    assert response.status_code == 200
    assert parse_events(response.content)[0][0] == "CLOSE"


def test_unsigned_state_of_earlier_versions_reconnects_the_connection(post):
    response = post([text({"type": "ping"})], headers={"Meta-Subs": "a", "Meta-Pos": "a=e.1"})
    [(kind, content)] = parse_events(response.content)
    assert (kind, content[:2]) == ("CLOSE", (4012).to_bytes(2, "big"))


def test_events_after_a_close_get_no_answer(post):
    garbage = [("TEXT", b"garbage")] * 3
    response = post(
        garbage + [text({"type": "subscribe", "channel": "late"})], headers=state(errors=19)
    )
    events = parse_events(response.content)
    assert events[-1] == ("CLOSE", (4008).to_bytes(2, "big"))
    assert b"late" not in response.content and state_of(response).subscriptions == {}


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


@pytest.mark.parametrize(
    "content_type",
    [
        "Application/websocket-events",  # issue 16: Pushpin's guard lets this through
        "APPLICATION/WEBSOCKET-EVENTS",
        "application/websocket-events; charset=utf-8",
        "application/websocket-events ",
    ],
)
def test_the_content_type_is_compared_exactly_as_pushpin_does(client, settings, content_type):
    settings.PUSHGATEWAY = GRIP
    response = client.post(
        "/ws/pushgateway/",
        b"",
        content_type=content_type,
        headers={"Grip-Sig": sig(), "Origin": "http://testserver", "Meta-Subs": "private-a"},
    )
    assert response.status_code == 400
    assert b"private-a" not in response.content and "Set-Meta-State" not in response


def test_a_request_over_the_caps_closes_the_connection_unread(post):
    from pushgateway.constants import MAX_PROXY_BODY_BYTES, MAX_PROXY_EVENTS

    ping = text({"type": "ping"})
    many = post([("OPEN", None)] + [ping] * MAX_PROXY_EVENTS)
    large = post([("TEXT", b"x" * MAX_PROXY_BODY_BYTES)])
    for response in (many, large):
        [(kind, content)] = parse_events(response.content)
        assert (kind, content[:2]) == ("CLOSE", (4009).to_bytes(2, "big"))
    at_the_cap = post([("OPEN", None)] + [ping] * (MAX_PROXY_EVENTS - 1))
    assert len(parse_events(at_the_cap.content)) == MAX_PROXY_EVENTS


def test_a_forged_private_subscription_gets_no_position(post):
    """Even in a state the view signed (a connection that once held a token), confirming a
    private channel again needs the token: no position without it."""
    headers = state(subscriptions={"private-a": Position("", 0)})
    response = post([text({"type": "subscribe", "channel": "private-a"})], headers=headers)
    frames = [json.loads(c[2:]) for _, c in parse_events(response.content)]
    assert frames[0]["code"] == "forbidden" and "position" not in frames[0]


# Issue 16: a live private subscription behind the proxy lasts only as long as its token. The
# tokens travel in the signed state and every request of the connection checks them again.


@pytest.fixture
def later(monkeypatch):
    """Set Django's signing clock to some seconds after the test began (tokens made before
    age; tokens made after are made at that time)."""
    start = time.time()

    def later(seconds):
        monkeypatch.setattr(signing.time, "time", lambda: start + seconds)

    return later


PRIVATE = "private-inbox-3"


def frames_of(response):
    """(controls, frames) of an answer: GRIP control messages and the page's frames."""
    events = [content for kind, content in parse_events(response.content) if kind == "TEXT"]
    controls = [json.loads(c[2:]) for c in events if c.startswith(b"c:")]
    return controls, [json.loads(c[2:]) for c in events if c.startswith(b"m:")]


def live(post, channel=PRIVATE):
    """A connection subscribed to `channel` with a fresh token and to the public "news":
    the headers its proxy sends on its next request."""
    token = pushgateway.make_token(channel)
    first = post([text({"type": "subscribe", "channel": channel, "token": token})])
    second = post([text({"type": "subscribe", "channel": "news"})], headers=kept(first))
    assert state_of(second).tokens == {channel: token}
    assert second["Keep-Alive-Interval"] == "20"  # the proxy asks again within 20 s
    return kept(second)


def assert_ended(response, channel=PRIVATE):
    """`channel` ended: `forbidden` to the page, `unsubscribe` to the proxy; "news" goes on."""
    controls, frames = frames_of(response)
    assert controls == [{"type": "unsubscribe", "channel": channel}]
    assert {"type": "pong"} in frames
    [ended] = [f for f in frames if f["type"] == "error"]
    assert (ended["code"], ended["channel"]) == ("forbidden", channel)
    assert set(state_of(response).subscriptions) == {"news"}
    assert state_of(response).tokens == {}
    assert response["Keep-Alive-Interval"] == "0"  # no private subscription left to check


def test_tokens_travel_in_the_signed_state():
    token = pushgateway.make_token(PRIVATE)
    sent = ProxyState({PRIVATE: Position("e", 3), "news": None}, 2, (1.5, 2.5), {PRIVATE: token})
    assert load_state(dump_state(sent, CONNECTION), CONNECTION) == sent


def test_the_largest_state_with_tokens_fits_the_cap():
    """Pushpin's 20 subscriptions, each a private name of 100 random characters with a
    32-character epoch, the largest seq and a token: well within MAX_PROXY_STATE_CHARS."""
    import random
    import string

    from pushgateway.constants import (
        MAX_CHANNEL_LENGTH,
        MAX_EPOCH_LENGTH,
        MAX_PROXY_STATE_CHARS,
        MAX_PROXY_SUBSCRIPTIONS,
        MAX_SEQ,
    )

    rnd = random.Random(16)
    alphabet = string.ascii_letters + string.digits + "._-"

    def noise(size):
        return "".join(rnd.choice(alphabet) for _ in range(size))

    names = [
        "private-" + noise(MAX_CHANNEL_LENGTH - len("private-"))
        for _ in range(MAX_PROXY_SUBSCRIPTIONS)
    ]
    largest = ProxyState(
        {name: Position(noise(MAX_EPOCH_LENGTH), MAX_SEQ) for name in names},
        20,
        (12.345, 1765000000.123),
        {name: pushgateway.make_token(name) for name in names},
    )
    value = dump_state(largest, "0" * 36)  # Pushpin's Connection-Id is a UUID
    assert len(value) < MAX_PROXY_STATE_CHARS * 0.6
    assert load_state(value, "0" * 36) == largest


def test_an_expired_token_in_the_state_ends_its_subscription(post, later):
    headers = live(post)
    later(DEFAULT_TOKEN_MAX_AGE - 10)
    still = post([text({"type": "ping"})], headers=headers)
    assert frames_of(still) == ([], [{"type": "pong"}])
    later(DEFAULT_TOKEN_MAX_AGE + 1)
    assert_ended(post([text({"type": "ping"})], headers=kept(still)))


def test_a_token_signed_with_a_dropped_fallback_key_ends_its_subscription(post, settings):
    old, new = "old-key-" + "x" * 50, "new-key-" + "y" * 50
    settings.SECRET_KEY = old
    token = pushgateway.make_token(PRIVATE)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = new, [old]
    # The state itself is signed with the new key, as every answer since the rotation is.
    start = Position("", 0)  # what a channel with nothing published has
    headers = state(subscriptions={PRIVATE: start, "news": start}, tokens={PRIVATE: token})
    rotated = post([text({"type": "ping"})], headers=headers)
    assert frames_of(rotated) == ([], [{"type": "pong"}])  # the old key still verifies
    assert state_of(rotated).tokens == {PRIVATE: token}
    settings.SECRET_KEY_FALLBACKS = []
    assert_ended(post([text({"type": "ping"})], headers=kept(rotated)))


def test_a_request_with_no_events_checks_the_tokens_too(post, client, later):
    """What the proxy sends every Keep-Alive-Interval when the client sent nothing: a
    client with a leaked token that never pings is checked all the same."""
    headers = live(post)
    later(DEFAULT_TOKEN_MAX_AGE + 1)
    response = client.post(
        "/ws/pushgateway/",
        b"",
        content_type="application/websocket-events",
        # The test client leaves out the type of an empty body; Pushpin sends it.
        CONTENT_TYPE="application/websocket-events",
        headers={"Grip-Sig": sig(), "Connection-Id": CONNECTION, **headers},
    )
    controls, frames = frames_of(response)
    assert controls == [{"type": "unsubscribe", "channel": PRIVATE}]
    assert [(f["code"], f["channel"]) for f in frames] == [("forbidden", PRIVATE)]
    assert set(state_of(response).subscriptions) == {"news"}


def test_a_renewed_subscribe_replaces_the_token_in_the_state(post, later):
    headers = live(post)
    later(DEFAULT_TOKEN_MAX_AGE + 1)  # due, and renewed in the same request: no forbidden
    fresh = pushgateway.make_token(PRIVATE)
    renewed = post(
        [text({"type": "subscribe", "channel": PRIVATE, "token": fresh})], headers=headers
    )
    controls, frames = frames_of(renewed)
    assert controls == []  # the proxy has the subscription already
    assert [(f["type"], f["channel"]) for f in frames] == [("subscribed", PRIVATE)]
    assert state_of(renewed).tokens == {PRIVATE: fresh}
    later(2 * DEFAULT_TOKEN_MAX_AGE - 10)  # past the first token's age, within the fresh one's
    assert frames_of(post([text({"type": "ping"})], headers=kept(renewed))) == (
        [],
        [{"type": "pong"}],
    )


def test_a_private_subscription_in_a_state_without_tokens_ends(post):
    """A state signed before tokens travelled in it: its private subscriptions end with
    `forbidden` (the page subscribes again with its token), its public ones go on."""
    headers = state(subscriptions={PRIVATE: Position("", 0), "news": Position("", 0)})
    assert_ended(post([text({"type": "ping"})], headers=headers))
