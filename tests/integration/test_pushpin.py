"""The Fanout path through a real Pushpin in front of a real daphne."""

import json
import urllib.error
import urllib.request

import pytest

from channels_app.websocket_events import encode_events
from tests.support.grip import GRIP, sig
from tests.support.servers import manage, recv_json, run_python, subscribe

pytestmark = pytest.mark.servers


def test_socket_through_pushpin_receives_a_fanout_publish(pushpin_in_front):
    pushpin = pushpin_in_front()
    with pushpin.connect() as ws:
        subscribe(ws, "comments-7")
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws) == {"type": "pong"}
        env = {"PUSHGATEWAY_BACKEND": "fanout", "GRIP_URL": pushpin.grip_url}
        code = "import pushgateway; pushgateway.publish('comments-7', {'pk': '9'})"
        result = run_python(code, None, env=env)
        assert result.returncode == 0, result.stderr
        frame = recv_json(ws)
    assert frame["type"] == "message" and frame["channel"] == "comments-7"
    assert frame["data"] == {"pk": "9"}


def test_bad_frames_through_pushpin_get_the_same_errors(pushpin_in_front):
    pushpin = pushpin_in_front()
    with pushpin.connect() as ws:
        ws.send("not json")
        assert recv_json(ws)["code"] == "invalid_json"
        ws.send(json.dumps({"type": "subscribe", "channel": "no spaces"}))
        assert recv_json(ws)["code"] == "invalid_channel"
        subscribe(ws, "still-works")


def test_unsubscribed_channels_are_not_delivered(pushpin_in_front):
    pushpin = pushpin_in_front()
    with pushpin.connect() as ws:
        subscribe(ws, "a")
        subscribe(ws, "b")
        ws.send(json.dumps({"type": "unsubscribe", "channel": "a"}))
        assert recv_json(ws) == {"type": "unsubscribed", "channel": "a"}
        env = {"PUSHGATEWAY_BACKEND": "fanout", "GRIP_URL": pushpin.grip_url}
        code = "import pushgateway; pushgateway.publish('a', 1); pushgateway.publish('b', 2)"
        assert run_python(code, None, env=env).returncode == 0
        assert recv_json(ws)["channel"] == "b"


def test_pushpin_down_fails_publishing_clearly_and_recovers(pushpin_in_front):
    pushpin = pushpin_in_front()
    env = {"PUSHGATEWAY_BACKEND": "fanout", "GRIP_URL": pushpin.grip_url}
    pushpin.stop()
    result = manage("pushgateway_publish", "c", redis_url=None, env=env)
    assert result.returncode == 1
    assert "gave up on 1 hint(s) after 4 attempts" in result.stderr
    assert "Connection refused" in result.stderr
    # Django itself is unaffected, and once Pushpin is back the path works again.
    with urllib.request.urlopen(pushpin.origin.url + "/events.json", timeout=5) as response:
        assert response.status == 200
    pushpin.start(pushpin.origin.port)
    with pushpin.connect() as ws:
        subscribe(ws, "c")
        assert (
            manage("pushgateway_publish", "c", "--data", "3", redis_url=None, env=env).returncode
            == 0
        )
        assert recv_json(ws)["data"] == 3


def test_with_iss_the_publish_carries_a_jwt_that_pushpin_accepts(pushpin_origin):
    """What system check W006 advises instead of a bearer key: `iss=` makes every publish
    carry a JWT signed with the key, and Pushpin delivers it."""
    from pushgateway.backends.grip import GripBackend
    from pushgateway.message import Message

    backend = GripBackend(GRIP_URL=pushpin_origin.grip_url + "&iss=pushpin")
    try:
        assert backend.client.authorize().count(".") == 2  # a JWT, not the key
        with pushpin_origin.connect() as ws:
            subscribe(ws, "issue16-jwt")
            backend.send_messages([Message("issue16-jwt", {"pk": "1"})])
            assert backend.flush(5) and backend.stats["sent"] == 1
            assert recv_json(ws)["data"] == {"pk": "1"}
    finally:
        backend.close()


def test_forged_or_missing_grip_sig_sent_straight_to_daphne_gets_403(start_daphne):
    daphne = start_daphne(PUSHGATEWAY_BACKEND="fanout", GRIP_URL=GRIP["OPTIONS"]["GRIP_URL"])
    body = encode_events([("OPEN", None)])
    for headers in ({}, {"Grip-Sig": sig(key="forged-key-that-is-long-enough-for-hs256")}):
        request = urllib.request.Request(
            daphne.url + "/ws/pushgateway/",
            data=body,
            headers={
                "Content-Type": "application/websocket-events",
                "Origin": daphne.url,
                **headers,
            },
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 403
    request = urllib.request.Request(
        daphne.url + "/ws/pushgateway/",
        data=body,
        headers={
            "Content-Type": "application/websocket-events",
            "Grip-Sig": sig(),
            "Origin": daphne.url,
        },
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.read() == b"OPEN\r\n"  # the same endpoint works with a valid one


# Issue 16: what a client can send through Pushpin besides a WebSocket. Pushpin strips client
# Meta-* headers only on real WebSocket connections; a plain HTTP request keeps them and is
# signed (Grip-Sig) like any other, and Pushpin's guard against a client posting
# application/websocket-events compares the type exactly.

SECRET = "private-issue16-secret"


def through(pushpin, headers, body=b""):
    """A plain HTTP POST to the WebSocket-over-HTTP path through Pushpin: (status, headers,
    body) as the client sees them."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", pushpin.port, timeout=10)
    try:
        connection.request("POST", "/ws/pushgateway/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def advance(redis_url, channel, times=2):
    """Publish `times` hints' worth of positions on `channel`, as a publisher would."""
    from pushgateway.backends.base import NetworkOptions

    store = NetworkOptions().position_store([redis_url], prefix="pushgateway")
    try:
        for _ in range(times):
            [position] = store.advance([channel])
        return position
    finally:
        store.close()


ATTACKS = {
    "the issue's request: case-changed type, forged Meta-Subs, empty body": (
        {"Content-Type": "Application/websocket-events", "Meta-Subs": SECRET},
        b"",
    ),
    "the same with a ping, positions and a connection id": (
        {
            "Content-Type": "APPLICATION/WEBSOCKET-EVENTS",
            "Meta-Subs": SECRET,
            "Meta-Pos": f"{SECRET}=x.0",
            "Connection-Id": "c1",
        },
        encode_events([("TEXT", b'{"type":"ping"}')]),
    ),
    "the exact type (Pushpin's guard)": (
        {"Content-Type": "application/websocket-events", "Meta-Subs": SECRET},
        encode_events([("OPEN", None)]),
    ),
    "the exact type with a parameter": (
        {"Content-Type": "application/websocket-events; charset=utf-8", "Meta-Subs": SECRET},
        b"",
    ),
    "a forged signed state": (
        {"Content-Type": "Application/websocket-events", "Meta-State": f"{SECRET}:forged"},
        encode_events([("OPEN", None), ("TEXT", b'{"type":"ping"}')]),
    ),
    "subscribe without a token over plain HTTP": (
        {"Content-Type": "Application/websocket-events"},
        encode_events([("TEXT", json.dumps({"type": "subscribe", "channel": SECRET}).encode())]),
    ),
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_forged_proxy_requests_through_pushpin_learn_nothing_of_a_private_channel(
    pushpin_origin, redis, attack
):
    advance(redis.url, SECRET)
    headers, body = attack
    status, answer_headers, answer = through(
        pushpin_origin, {"Origin": pushpin_origin.url, **headers}, body
    )
    assert status in (400, 403), (status, answer)
    assert SECRET.encode() not in answer
    assert not [h for h in answer_headers if h.lower().startswith("set-meta")]


def test_meta_headers_on_a_real_websocket_through_pushpin_are_not_believed(pushpin_origin, redis):
    """A client's own Meta-* headers on its WebSocket handshake (stripped by Pushpin) and
    a subscribe without a token: the connection is told nothing of the private channel."""
    from websockets.sync.client import connect

    position = advance(redis.url, SECRET)
    forged = {"Meta-Subs": SECRET, "Meta-Pos": f"{SECRET}=x.0", "Meta-State": "forged"}
    url = f"ws://127.0.0.1:{pushpin_origin.port}/ws/pushgateway/"
    with connect(url, origin=pushpin_origin.url, additional_headers=forged) as ws:
        subscribe(ws, "issue16-public")
        ws.send(json.dumps({"type": "subscribe", "channel": SECRET}))
        assert recv_json(ws)["code"] == "forbidden"
        ws.send(json.dumps({"type": "subscribe", "channel": SECRET, "token": "bad"}))
        assert recv_json(ws)["code"] == "forbidden"
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws) == {"type": "pong"}  # and no resync of the private channel
        # The same connection with the channel's token is told its position.
        token = run_python(
            f"import pushgateway; print(pushgateway.make_token({SECRET!r}))", None
        ).stdout.strip()
        frame = subscribe(ws, SECRET, token=token)
        assert frame["position"] == position.as_json()


def test_the_largest_signed_state_makes_the_round_trip_through_pushpin(pushpin_origin):
    """Pushpin carries the state back on every request: with as many private subscriptions
    of the longest names, each with its token, as a connection may hold, it still arrives
    and verifies."""
    import pushgateway
    from pushgateway.constants import MAX_CHANNEL_LENGTH, MAX_PROXY_SUBSCRIPTIONS

    names = [
        f"private-{i:02d}".ljust(MAX_CHANNEL_LENGTH, "x") for i in range(MAX_PROXY_SUBSCRIPTIONS)
    ]
    with pushpin_origin.connect() as ws:
        for name in names:
            subscribe(ws, name, token=pushgateway.make_token(name))
        ws.send(json.dumps({"type": "unsubscribe", "channel": names[0]}))
        assert recv_json(ws) == {"type": "unsubscribed", "channel": names[0]}
        # One more than the state held a moment ago.
        subscribe(ws, names[0], token=pushgateway.make_token(names[0]))
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws) == {"type": "pong"}  # every token checked again, all still valid


def test_an_expired_token_ends_its_subscription_through_pushpin_at_the_next_ping(
    pushpin_in_front,
):
    """Issue 16: behind Pushpin the tokens travel in the connection's signed state and each
    request of the connection checks them again. A private subscription whose token expired
    gets `forbidden` on its next ping, and Pushpin delivers nothing more on it (the view
    sent it `c:unsubscribe`), while a public channel of the same socket goes on."""
    import time

    import pushgateway
    from pushgateway.backends.grip import GripBackend
    from pushgateway.message import Message
    from tests.support.servers import options_env

    # Tokens are stamped in whole seconds: one made at t is refused from a moment between
    # t + 1 and t + 2 on.
    pushpin = pushpin_in_front(**options_env({"TOKEN_MAX_AGE": 2, "DRAIN_SECONDS": 0}))
    secret, news = "private-issue16-expiry", "issue16-news"
    backend = GripBackend(GRIP_URL=pushpin.grip_url)
    try:
        with pushpin.connect() as ws:
            made, token = time.monotonic(), pushgateway.make_token(secret)
            subscribe(ws, secret, token=token)
            subscribe(ws, news)
            ws.send(json.dumps({"type": "ping"}))
            assert recv_json(ws) == {"type": "pong"}  # still valid: nothing ends
            time.sleep(max(0.0, made + 2.5 - time.monotonic()))
            ws.send(json.dumps({"type": "ping"}))
            assert recv_json(ws) == {"type": "pong"}
            ended = recv_json(ws)
            assert (ended["type"], ended["code"], ended["channel"]) == (
                "error",
                "forbidden",
                secret,
            )
            backend.send_messages([Message(secret, {"pk": "1"}), Message(news, {"pk": "2"})])
            assert backend.flush(5) and backend.stats["sent"] == 2
            after = recv_json(ws)
            assert (after["type"], after["channel"]) == ("message", news)
            backend.send_messages([Message(secret, {"pk": "3"})])
            assert backend.flush(5)
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.5)  # nothing more on the private channel
    finally:
        backend.close()
