"""What tabs that share one connection rely on from the server (docs/protocol.md): several
subscribes for one channel on one connection, each answered against its own `since`, in the
order they came, also while the first of them is still joining the channel. The leader tab
hands each answer to the tab whose subscribe it answers."""

import json
import urllib.request
import uuid

import pytest

from tests.support.servers import recv_json

pytestmark = pytest.mark.servers


@pytest.fixture(params=["daphne", "pushpin"])
def server(request, start_daphne):
    if request.param == "pushpin":
        return request.getfixturevalue("pushpin_in_front")()
    return start_daphne()


def position_of(server, channel: str) -> dict:
    """The channel's position, from the positions view (as a page would render it)."""
    body = json.dumps({"channels": [channel], "tokens": {}}).encode()
    request = urllib.request.Request(
        server.url + "/pushgateway/positions/",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["positions"][channel]


def test_subscribes_of_one_channel_are_answered_in_order_against_their_own_since(server):
    channel = f"tabs-{uuid.uuid4().hex[:8]}"
    now = position_of(server, channel)
    behind = {"epoch": "gone", "seq": 3}
    # The first joins the channel; the others arrive while it may still be joining. Each
    # answer's `stale` says which subscribe it answers.
    sinces = [now, behind, None, now, behind, now]
    with server.connect() as ws:
        for since in sinces:
            frame = {"type": "subscribe", "channel": channel}
            ws.send(json.dumps(frame if since is None else {**frame, "since": since}))
        answers = [recv_json(ws, timeout=10) for _ in sinces]
    assert [a["type"] for a in answers] == ["subscribed"] * len(sinces), answers
    assert [a["stale"] for a in answers] == [since != now for since in sinces], answers
    assert all(a["position"] == now for a in answers), answers
