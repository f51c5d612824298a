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
