"""The wire protocol, without any server: what a client sees for each frame it sends."""

import json

import pytest

from pushgateway import constants, protocol
from pushgateway.constants import CloseCode, ErrorCode
from pushgateway.protocol import Position, Session, Subscribe
from pushgateway.ratelimit import TokenBucket


def frames(reply):
    return [json.loads(f) for f in reply.frames]


def test_subscribe_asks_the_transport_to_join_and_confirm_with_the_position():
    session = Session()
    reply = session.receive_text('{"type": "subscribe", "channel": "comments-7"}')
    assert reply.subscribe == [Subscribe("comments-7", None)]
    assert reply.frames == [] and reply.close is None
    # The transport answers once joined, with the position it reads then.
    frame = json.loads(protocol.subscribed_frame("comments-7", Position("e1", 4), None))
    assert frame == {
        "type": "subscribed",
        "channel": "comments-7",
        "position": {"epoch": "e1", "seq": 4},
        "stale": True,  # the page said nothing about what it knows
    }


@pytest.mark.parametrize(
    ("since", "position", "stale"),
    [
        (Position("e1", 4), Position("e1", 4), False),  # saw everything
        (Position("e1", 3), Position("e1", 4), True),  # missed one
        (Position("e0", 4), Position("e1", 4), True),  # the store forgot: cannot compare
        (None, Position("e1", 4), True),  # rendered without a position
        (Position("e1", 4), None, True),  # the store cannot be read now
        (protocol.START, protocol.START, False),  # nothing ever published
    ],
)
def test_subscribed_says_stale_exactly_when_the_page_may_have_missed_hints(since, position, stale):
    assert json.loads(protocol.subscribed_frame("a", position, since))["stale"] is stale


def test_since_travels_from_the_client_to_the_transport():
    session = Session()
    reply = session.receive_text(
        '{"type": "subscribe", "channel": "a", "since": {"epoch": "e1", "seq": 12}}'
    )
    assert reply.subscribe == [Subscribe("a", Position("e1", 12))]


@pytest.mark.parametrize(
    "since",
    [
        "e1:12",
        {"epoch": "e1"},
        {"epoch": 5, "seq": 1},
        {"epoch": "e1", "seq": -1},
        {"epoch": "e1", "seq": 1.5},
        {"epoch": "e1", "seq": True},
        {"epoch": "e1", "seq": 2**53},
        {"epoch": "x" * 33, "seq": 1},
    ],
)
def test_a_malformed_since_is_an_error_naming_the_channel(since):
    session = Session()
    reply = session.receive_text(json.dumps({"type": "subscribe", "channel": "a", "since": since}))
    [error] = frames(reply)
    assert (error["code"], error["channel"]) == (ErrorCode.INVALID_POSITION, "a")
    assert reply.subscribe == [] and session.subscriptions == set()


def test_subscribing_twice_joins_once_and_confirms_again():
    session = Session()
    session.receive_text('{"type": "subscribe", "channel": "a"}')
    again = session.receive_text('{"type": "subscribe", "channel": "a"}')
    assert again.subscribe == [Subscribe("a", None, joined=True)]


def test_unsubscribe_leaves_and_unknown_unsubscribe_is_an_error():
    session = Session()
    session.receive_text('{"type": "subscribe", "channel": "a"}')
    reply = session.receive_text('{"type": "unsubscribe", "channel": "a"}')
    assert frames(reply) == [{"type": "unsubscribed", "channel": "a"}]
    assert reply.unsubscribe == ["a"]
    again = session.receive_text('{"type": "unsubscribe", "channel": "a"}')
    assert frames(again)[0]["code"] == ErrorCode.NOT_SUBSCRIBED
    assert again.unsubscribe == []


def test_ping_gets_pong():
    assert frames(Session().receive_text('{"type":"ping"}')) == [{"type": "pong"}]


@pytest.mark.parametrize(
    ("text", "code", "channel"),
    [
        ("not json", ErrorCode.INVALID_JSON, None),
        ("[1, 2]", ErrorCode.INVALID_FRAME, None),
        ('{"type": "dance"}', ErrorCode.UNKNOWN_TYPE, None),
        ('{"channel": "a"}', ErrorCode.UNKNOWN_TYPE, None),
        ('{"type": "subscribe"}', ErrorCode.INVALID_CHANNEL, None),
        ('{"type": "subscribe", "channel": "has space"}', ErrorCode.INVALID_CHANNEL, None),
        ('{"type": "subscribe", "channel": ""}', ErrorCode.INVALID_CHANNEL, None),
        ('{"type": "subscribe", "channel": 7}', ErrorCode.INVALID_CHANNEL, None),
        ('{"type": "subscribe", "channel": "' + "x" * 101 + '"}', ErrorCode.INVALID_CHANNEL, None),
        ('{"type": "subscribe", "channel": "private-x"}', ErrorCode.FORBIDDEN, "private-x"),
        ("[" * 4000, ErrorCode.INVALID_JSON, None),  # too deep for json: RecursionError
        ('{"type": "\\ud800"}', ErrorCode.UNKNOWN_TYPE, None),  # a lone surrogate
        (
            '{"type": "subscribe", "channel": "a", "pad": "' + "x" * 5000 + '"}',
            ErrorCode.FRAME_TOO_LARGE,
            None,
        ),
    ],
)
def test_bad_frames_get_an_error_frame_and_the_session_goes_on(text, code, channel):
    session = Session()
    reply = session.receive_text(text)
    [error] = frames(reply)
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["channel"] == channel
    assert error["message"]
    assert reply.close is None and reply.subscribe == []
    ok = session.receive_text('{"type": "subscribe", "channel": "after"}')
    assert ok.subscribe == [Subscribe("after", None)]


def test_binary_frames_are_refused():
    reply = Session().receive_bytes(b"\x00\x01")
    assert frames(reply)[0]["code"] == ErrorCode.BINARY_FRAME
    assert reply.close is None


def test_huge_frame_closes_with_an_application_code():
    reply = Session().receive_text("x" * (constants.MAX_FRAME_BYTES_HARD + 1))
    assert frames(reply)[0]["code"] == ErrorCode.FRAME_TOO_LARGE
    assert reply.close == CloseCode.MESSAGE_TOO_BIG


def test_a_client_that_keeps_misbehaving_is_closed():
    session = Session()
    replies = [session.receive_text("garbage") for _ in range(constants.MAX_ERRORS + 1)]
    assert all(r.close is None for r in replies[:-1])
    assert replies[-1].close == CloseCode.POLICY_VIOLATION == 4008


def test_close_codes_are_ones_every_asgi_server_can_send():
    # daphne refuses 1008 and 1009 (its WebSocket library allows 1000 and 3000-4999 only).
    for code in (CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG, CloseCode.TRY_AGAIN_LATER):
        assert 4000 <= code <= 4999


def test_refusals_are_answers_that_never_close_the_connection():
    session = Session(max_subscriptions=1)
    session.receive_text('{"type": "subscribe", "channel": "a"}')
    for n in range(constants.MAX_ERRORS * 3):
        over = session.receive_text(json.dumps({"type": "subscribe", "channel": f"b{n}"}))
        private = session.receive_text('{"type": "subscribe", "channel": "private-x"}')
        assert frames(over)[0]["code"] == ErrorCode.TOO_MANY_SUBSCRIPTIONS
        assert frames(private)[0]["code"] == ErrorCode.FORBIDDEN
        assert over.close is None and private.close is None
    assert session.errors == 0


def test_private_channels_need_a_token_the_authorizer_accepts():
    session = Session(authorize=lambda channel, token: token == f"ok:{channel}")
    denied = session.receive_text('{"type":"subscribe","channel":"private-a","token":"bad"}')
    assert frames(denied)[0]["code"] == ErrorCode.FORBIDDEN
    allowed = session.receive_text(
        '{"type":"subscribe","channel":"private-a","token":"ok:private-a"}'
    )
    assert allowed.subscribe == [Subscribe("private-a", None)]


def test_a_private_channel_the_connection_has_is_confirmed_only_with_a_valid_token():
    """'subscribed' carries the channel's position: it is the token check's to give, also
    when the connection has the channel already (issue 16: the proxy's state was forgeable,
    and this answer came before the token check)."""
    session = Session(authorize=lambda channel, token: token == f"ok:{channel}")
    session.subscriptions.add("private-a")
    for frame in (
        '{"type":"subscribe","channel":"private-a"}',
        '{"type":"subscribe","channel":"private-a","token":"ok:private-b"}',
    ):
        reply = session.receive_text(frame)
        assert reply.subscribe == [] and frames(reply)[0]["code"] == ErrorCode.FORBIDDEN
    again = session.receive_text(
        '{"type":"subscribe","channel":"private-a","token":"ok:private-a"}'
    )
    assert again.subscribe == [Subscribe("private-a", None, joined=True)]


def test_subscription_limit():
    session = Session(max_subscriptions=2)
    for name in ("a", "b"):
        assert session.receive_text(json.dumps({"type": "subscribe", "channel": name})).subscribe
    reply = session.receive_text('{"type": "subscribe", "channel": "c"}')
    assert frames(reply)[0]["code"] == ErrorCode.TOO_MANY_SUBSCRIPTIONS
    assert session.subscriptions == {"a", "b"}


def test_subscribe_failed_undoes_the_subscription():
    session = Session()
    session.receive_text('{"type": "subscribe", "channel": "a"}')
    error = json.loads(session.subscribe_failed("a"))
    assert error == {
        "type": "error",
        "code": ErrorCode.UNAVAILABLE,
        "message": "subscribe failed; try again later",
        "channel": "a",
    }
    assert session.close_all() == []


def test_close_all_returns_channels_to_leave():
    session = Session()
    for name in ("b", "a"):
        session.receive_text(json.dumps({"type": "subscribe", "channel": name}))
    assert session.close_all() == ["a", "b"]
    assert session.subscriptions == set()


def test_message_frame_encoding():
    text = protocol.message_frame(
        "c", "id1", {"model": "demo.comment", "pk": "4"}, Position("e", 3)
    )
    assert json.loads(text) == {
        "type": "message",
        "channel": "c",
        "id": "id1",
        "data": {"model": "demo.comment", "pk": "4"},
        "position": {"epoch": "e", "seq": 3},
    }


def test_resync_frame_encoding():
    assert json.loads(protocol.resync_frame("c", Position("e", 3))) == {
        "type": "resync",
        "channel": "c",
        "position": {"epoch": "e", "seq": 3},
    }
    assert json.loads(protocol.resync_frame("c", None))["position"] is None


@pytest.mark.parametrize(
    ("known", "position", "news"),
    [
        (Position("e", 3), Position("e", 4), True),
        (Position("e", 4), Position("e", 4), False),
        (Position("e", 5), Position("e", 4), False),  # ahead: a hint overtook the read
        (Position("e", 4), Position("f", 1), True),
        (protocol.START, Position("f", 1), True),
        (None, Position("e", 0), True),
        (Position("e", 4), None, False),  # cannot tell
    ],
)
def test_has_news(known, position, news):
    assert protocol.has_news(known, position) is news


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def churn_session(rate=2, burst=3, **kwargs):
    clock = Clock()
    return Session(churn=TokenBucket(rate, burst, clock), **kwargs), clock


def subscribe(session, channel):
    return session.receive_text(json.dumps({"type": "subscribe", "channel": channel}))


def test_subscribes_past_the_burst_are_refused_with_when_to_try_again():
    session, clock = churn_session(rate=2, burst=3)
    assert all(subscribe(session, name).subscribe for name in ("a", "b", "c"))
    refused = subscribe(session, "d")
    [error] = frames(refused)
    assert error == {
        "type": "error",
        "code": ErrorCode.RATE_LIMITED,
        "message": "more than 3 subscribes and unsubscribes at once or 2 per second; "
        "try again in 0.5 s",
        "channel": "d",
        "retry_after": 0.5,
    }
    assert refused.subscribe == [] and refused.close is None
    assert session.subscriptions == {"a", "b", "c"} and session.errors == 0
    clock.now += 0.5  # one token back
    assert subscribe(session, "d").subscribe == [Subscribe("d", None)]
    assert frames(subscribe(session, "e"))[0]["code"] == ErrorCode.RATE_LIMITED


def test_a_client_that_ignores_rate_limits_is_refused_not_disconnected():
    session, _ = churn_session(rate=1, burst=1)
    subscribe(session, "a")
    for n in range(constants.MAX_ERRORS * 3):
        reply = subscribe(session, f"b{n}")
        assert frames(reply)[0]["code"] == ErrorCode.RATE_LIMITED and reply.close is None
    assert session.errors == 0


def test_unsubscribes_are_never_refused_but_spend_the_same_budget():
    session, clock = churn_session(rate=1, burst=4)
    subscribe(session, "a")
    subscribe(session, "b")
    for channel in ("a", "b"):
        assert session.receive_text(
            json.dumps({"type": "unsubscribe", "channel": channel})
        ).unsubscribe
    assert session.churn.tokens == 0  # churn (subscribe, unsubscribe, ...) costs two each
    assert frames(subscribe(session, "a"))[0]["code"] == ErrorCode.RATE_LIMITED
    leave_again = session.receive_text('{"type": "unsubscribe", "channel": "a"}')
    assert frames(leave_again)[0]["code"] == ErrorCode.NOT_SUBSCRIBED  # nothing to leave


def test_confirming_a_subscription_again_costs_nothing():
    session, _ = churn_session(rate=1, burst=1)
    subscribe(session, "a")
    for _ in range(5):
        assert subscribe(session, "a").subscribe == [Subscribe("a", None, joined=True)]


def test_a_clock_that_goes_backwards_refills_nothing_and_fails_nothing():
    # Behind Pushpin each request may reach another host, whose clock may be behind.
    session, clock = churn_session(rate=1, burst=2)
    subscribe(session, "a")
    subscribe(session, "b")
    clock.now -= 30
    assert frames(subscribe(session, "c"))[0]["code"] == ErrorCode.RATE_LIMITED
    clock.now += 1
    assert subscribe(session, "c").subscribe


def test_a_token_bucket_needs_a_positive_rate_and_a_burst_of_one():
    for rate, burst in ((0, 5), (1, 0.5), (float("nan"), 5)):
        with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
            TokenBucket(rate, burst, Clock())


# Kept from fuzzing (tests/integration/test_fuzz.py): each once made, or could make, a reply a
# browser cannot read (not UTF-8, not JSON) or an exception in the server.
NASTY_FRAMES = {
    "lone surrogate as channel": ('{"type":"subscribe","channel":"\\ud800"}', "invalid_channel"),
    "lone surrogate raw in channel": ('{"type":"subscribe","channel":"\ud800"}', "invalid_channel"),
    "lone surrogate in since epoch": (
        '{"type":"subscribe","channel":"a","since":{"epoch":"\\udfff","seq":1}}',
        None,
    ),
    "NaN seq": (
        '{"type":"subscribe","channel":"a","since":{"epoch":"e","seq":NaN}}',
        "invalid_position",
    ),
    "Infinity seq": (
        '{"type":"subscribe","channel":"a","since":{"epoch":"e","seq":Infinity}}',
        "invalid_position",
    ),
    "seq past 2**53": (
        '{"type":"subscribe","channel":"a","since":{"epoch":"e","seq":9007199254740992}}',
        "invalid_position",
    ),
    "4000-digit seq": (
        '{"type":"subscribe","channel":"a","since":{"epoch":"e","seq":' + "9" * 4000 + "}}",
        "invalid_position",
    ),
    "NaN type": ('{"type":NaN}', "unknown_type"),
    "object as type": ('{"type":{"type":"ping"}}', "unknown_type"),
    "duplicate type key: the last one counts": ('{"type":"subscribe","type":"ping"}', None),
    "huge number as channel": ('{"type":"subscribe","channel":1e999}', "invalid_channel"),
    "private prefix alone": ('{"type":"subscribe","channel":"private-"}', "forbidden"),
    "4 KiB of objects": ('{"a":' * 800, "invalid_json"),
    "NUL in channel": ('{"type":"subscribe","channel":"a\\u0000"}', "invalid_channel"),
}


@pytest.mark.parametrize(("text", "code"), NASTY_FRAMES.values(), ids=NASTY_FRAMES.keys())
def test_nasty_frames_are_answered_with_frames_a_browser_can_read(text, code):
    reply = Session().receive_text(text)
    for frame in reply.frames:
        frame.encode("utf-8")  # strict: what a WebSocket text frame can carry
    answers = frames(reply)
    if code is None:  # accepted: a subscription to confirm, or a pong
        assert reply.subscribe or answers == [{"type": "pong"}]
    else:
        assert [a["code"] for a in answers] == [code]
