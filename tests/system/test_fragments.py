"""Declarative fragments in Chromium: the demo's page without a script of its own keeps its
htmx fragment live, and a fragment that leaves the document unsubscribes its channel."""

import json
import time

import pytest
from playwright.sync_api import expect

from tests.support.pages import new_event, post_comment

pytestmark = [pytest.mark.browser, pytest.mark.servers]


def record_frames(page):
    """The JSON frames the page's sockets send and receive, as two lists filled as they go."""
    sent, received = [], []

    def socket(ws):
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: received.append(json.loads(payload)))

    page.on("websocket", socket)
    return sent, received


def wait_for(page, found, timeout=10.0):
    """Let the page run until `found()` is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not found():
        assert time.monotonic() < deadline, "waited in vain"
        page.wait_for_timeout(50)


def test_an_htmx_fragment_refreshes_itself_and_unsubscribes_when_removed(browser, start_daphne):
    daphne = start_daphne()
    poster, live = browser.new_page(), browser.new_page()
    event_url = new_event(poster, daphne.url)
    channel = "comments-" + event_url.rstrip("/").rsplit("/", 1)[1]
    sent, received = record_frames(live)
    live.goto(event_url + "live/")
    # No script of the page's own: the browser module and htmx, both served by the site.
    scripts = live.eval_on_selector_all("script[src]", "all => all.map((s) => s.src)")
    assert scripts == [
        f"{daphne.url}/static/{path}" for path in ("pushgateway/pushgateway.js", "htmx/htmx.min.js")
    ]
    assert live.locator("script:not([src]):not([type='application/json'])").count() == 0
    wait_for(
        live,
        lambda: (
            {"type": "subscribed", "channel": channel}
            in [{k: f.get(k) for k in ("type", "channel")} for f in received]
        ),
    )
    live.evaluate("window.mark = 'same document'")

    for body in ("Live without a script", "And again, into the swapped-in fragment"):
        post_comment(poster, event_url, body)
        expect(live.locator("#live-comments li", has_text=body)).to_have_count(1)
    assert live.evaluate("window.mark") == "same document"  # refreshed in place, not reloaded
    # Each refresh replaced the element (outerHTML): the channel's subscription stayed.
    assert [f["type"] for f in sent if f.get("channel") == channel] == ["subscribe"]

    # Removed, it unsubscribes; another fragment added meanwhile keeps the socket open (as an
    # htmx swap elsewhere on the page could) and hears the next comment's hint on "events".
    live.evaluate(
        """() => {
            window.heard = [];
            const other = document.createElement("p");
            other.setAttribute("data-pushgateway-channel", "events");
            other.addEventListener("pushgateway:change", (e) => heard.push(e.detail.reason));
            document.body.append(other);
            document.getElementById("live-comments").remove();
        }"""
    )
    wait_for(live, lambda: {"type": "unsubscribed", "channel": channel} in received)
    wait_for(live, lambda: any(f.get("channel") == "events" for f in received))
    live.wait_for_timeout(600)  # the new fragment's first callback (it had no since) is past
    before = len(live.evaluate("heard"))
    post_comment(poster, event_url, "Nobody here follows this channel")
    wait_for(live, lambda: len(live.evaluate("heard")) > before)
    assert [f["type"] for f in sent if f.get("channel") == "events"] == ["subscribe"]
    after = received[received.index({"type": "unsubscribed", "channel": channel}) :]
    assert [f for f in after if f.get("channel") == channel and f["type"] == "message"] == []
