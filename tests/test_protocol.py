"""The wire protocol, without any server: what a client sees for each frame it sends."""

import json

import pytest

from pushgateway import protocol
from pushgateway.protocol import Session


def frames(reply):
    return [json.loads(f) for f in reply.frames]


def test_subscribe_confirms_and_asks_transport_to_join():
    session = Session()
    reply = session.receive_text('{"type": "subscribe", "channel": "comments-7"}')
    assert frames(reply) == [{"type": "subscribed", "channel": "comments-7"}]
    assert reply.subscribe == ["comments-7"]
    assert reply.close is None


def test_subscribing_twice_joins_once():
    session = Session()
    session.receive_text('{"type": "subscribe", "channel": "a"}')
    again = session.receive_text('{"type": "subscribe", "channel": "a"}')
    assert frames(again) == [{"type": "subscribed", "channel": "a"}]
    assert again.subscribe == []


def test_unsubscribe_leaves_and_unknown_unsubscribe_is_an_error():
    session = Session()
    session.receive_text('{"type": "subscribe", "channel": "a"}')
    reply = session.receive_text('{"type": "unsubscribe", "channel": "a"}')
    assert frames(reply) == [{"type": "unsubscribed", "channel": "a"}]
    assert reply.unsubscribe == ["a"]
    again = session.receive_text('{"type": "unsubscribe", "channel": "a"}')
    assert frames(again)[0]["code"] == protocol.NOT_SUBSCRIBED
    assert again.unsubscribe == []


def test_ping_gets_pong():
    assert frames(Session().receive_text('{"type":"ping"}')) == [{"type": "pong"}]


@pytest.mark.parametrize(
    ("text", "code", "channel"),
    [
        ("not json", protocol.INVALID_JSON, None),
        ("[1, 2]", protocol.INVALID_FRAME, None),
        ('{"type": "dance"}', protocol.UNKNOWN_TYPE, None),
        ('{"channel": "a"}', protocol.UNKNOWN_TYPE, None),
        ('{"type": "subscribe"}', protocol.INVALID_CHANNEL, None),
        ('{"type": "subscribe", "channel": "has space"}', protocol.INVALID_CHANNEL, None),
        ('{"type": "subscribe", "channel": ""}', protocol.INVALID_CHANNEL, None),
        ('{"type": "subscribe", "channel": 7}', protocol.INVALID_CHANNEL, None),
        ('{"type": "subscribe", "channel": "' + "x" * 101 + '"}', protocol.INVALID_CHANNEL, None),
        ('{"type": "subscribe", "channel": "private-x"}', protocol.FORBIDDEN, "private-x"),
        (
            '{"type": "subscribe", "channel": "a", "pad": "' + "x" * 5000 + '"}',
            protocol.FRAME_TOO_LARGE,
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
    assert frames(ok) == [{"type": "subscribed", "channel": "after"}]


def test_binary_frames_are_refused():
    reply = Session().receive_bytes(b"\x00\x01")
    assert frames(reply)[0]["code"] == protocol.BINARY_FRAME
    assert reply.close is None


def test_huge_frame_closes_with_1009():
    reply = Session().receive_text("x" * (protocol.MAX_FRAME_BYTES_HARD + 1))
    assert frames(reply)[0]["code"] == protocol.FRAME_TOO_LARGE
    assert reply.close == protocol.CLOSE_TOO_BIG


def test_a_client_that_keeps_misbehaving_is_closed_with_1008():
    session = Session()
    replies = [session.receive_text("garbage") for _ in range(protocol.MAX_ERRORS + 1)]
    assert all(r.close is None for r in replies[:-1])
    assert replies[-1].close == protocol.CLOSE_POLICY_VIOLATION


def test_private_channels_need_a_token_the_authorizer_accepts():
    session = Session(authorize=lambda channel, token: token == f"ok:{channel}")
    denied = session.receive_text('{"type":"subscribe","channel":"private-a","token":"bad"}')
    assert frames(denied)[0]["code"] == protocol.FORBIDDEN
    allowed = session.receive_text(
        '{"type":"subscribe","channel":"private-a","token":"ok:private-a"}'
    )
    assert allowed.subscribe == ["private-a"]


def test_subscription_limit():
    session = Session(max_subscriptions=2)
    for name in ("a", "b"):
        assert session.receive_text(json.dumps({"type": "subscribe", "channel": name})).subscribe
    reply = session.receive_text('{"type": "subscribe", "channel": "c"}')
    assert frames(reply)[0]["code"] == protocol.TOO_MANY_SUBSCRIPTIONS
    assert session.subscriptions == {"a", "b"}


def test_subscribe_failed_undoes_the_subscription():
    session = Session()
    session.receive_text('{"type": "subscribe", "channel": "a"}')
    error = json.loads(session.subscribe_failed("a"))
    assert error == {
        "type": "error",
        "code": protocol.UNAVAILABLE,
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
    text = protocol.message_frame("c", "id1", {"model": "demo.comment", "pk": "4"})
    assert json.loads(text) == {
        "type": "message",
        "channel": "c",
        "id": "id1",
        "data": {"model": "demo.comment", "pk": "4"},
    }


def test_group_names_fit_channel_layers():
    assert protocol.group_name("comments-7") == "pushgateway.comments-7"
    long_a, long_b = "a" * 100, "a" * 99 + "b"
    assert len(protocol.group_name(long_a)) < 100
    assert protocol.group_name(long_a) != protocol.group_name(long_b)
