"""Pages whose WebSockets are refused or cut stay live on the stream: real servers, Chromium.

Hints are published one at a time by a publisher that is already running (the publish call
itself is timed, not a process start), and the page's callbacks are timed by its own clock.
"""

import statistics
import time
import uuid

import pytest

from tests.support.pages import REFUSED_WEBSOCKET
from tests.support.publisher import Publisher

pytestmark = [pytest.mark.browser, pytest.mark.servers]

# A proxy that lets sockets open and cuts each 2 s later (Phoenix #6766's trap).
CUT_WEBSOCKET = """(() => {
    const Real = window.WebSocket;
    window.WebSocket = class extends Real {
        constructor(url) {
            super(url);
            window.socketsOpened = (window.socketsOpened || 0) + 1;
            this.addEventListener("open", () => setTimeout(() => super.close(), 2000));
        }
    };
})()"""

# Every callback of `channel`, with the page's clock (comparable with time.time() x 1000).
RECORDER = """(channel) => {
    window.heard = [];
    PushGateway.subscribe(channel, (event) => window.heard.push(
        {reason: event.reason, data: event.data, at: performance.timeOrigin + performance.now()}));
}"""

ON_STREAM = "PushGateway.transport === 'stream' && PushGateway.state === 'connected'"


def live_page(browser, base_url, script, timeout=30_000):
    """A page with `script` run before its own, subscribed to a fresh channel, once it is
    connected on the stream; returns the page and the channel."""
    page = browser.new_page()
    page.add_init_script(script)
    page.goto(base_url + "/")
    channel = f"live-{uuid.uuid4().hex[:8]}"
    page.evaluate(RECORDER, channel)
    page.wait_for_function(ON_STREAM, timeout=timeout)
    # Its `subscribed` frame: a page with no rendered position refetches once (a resync), past
    # whose throttle window each hint is a callback of its own.
    page.wait_for_timeout(1000)
    page.evaluate("window.heard = []")
    return page, channel


def delays(page, publisher, channel, count):
    """Publish `count` hints one at a time; each must reach the page as a `message` with its
    data. Returns the seconds from each publish call to its callback."""
    took = []
    for n in range(count):
        at = publisher.publish(channel, {"n": n})
        page.wait_for_function(f"window.heard.length > {n}", timeout=5000)
        heard = page.evaluate(f"window.heard[{n}]")
        assert heard["reason"] == "message" and heard["data"] == {"n": n}, heard
        took.append(heard["at"] / 1000 - at)
        page.wait_for_timeout(600)  # past the throttle's window: each hint its own callback
    return took


@pytest.mark.parametrize("proxy", ["daphne", "pushpin"])
def test_with_websockets_refused_hints_reach_the_page_on_the_stream_within_half_a_second(
    browser, start_daphne, redis, request, proxy
):
    if proxy == "daphne":
        base_url, env = start_daphne(redis.url).url, {}
    else:
        pushpin_origin = request.getfixturevalue("pushpin_origin")  # Pushpin before daphne
        base_url = pushpin_origin.url
        env = {"PUSHGATEWAY_BACKEND": "fanout", "GRIP_URL": pushpin_origin.grip_url}
    page, channel = live_page(browser, base_url, REFUSED_WEBSOCKET)
    with Publisher(redis.url, **env) as publisher:
        took = delays(page, publisher, channel, 7)
    print(f"\n{proxy}: publish to callback over the stream, s: {[round(t, 3) for t in took]}")
    assert statistics.median(took) <= 0.5, took
    assert page.evaluate("window.socketsTried") >= 1
    page.close()


def test_a_page_whose_sockets_die_after_2_s_ends_up_on_the_stream_and_stays_live(
    browser, start_daphne, redis
):
    daphne = start_daphne(redis.url)
    started = time.monotonic()
    page, channel = live_page(browser, daphne.url, CUT_WEBSOCKET)
    moved = time.monotonic() - started
    print(f"\non the stream after {moved:.1f} s, {page.evaluate('window.socketsOpened')} sockets")
    assert moved < 30
    page.wait_for_timeout(5000)  # it stays there: no socket comes back to be cut again
    opened = page.evaluate("window.socketsOpened")
    assert page.evaluate(ON_STREAM)
    with Publisher(redis.url) as publisher:
        took = delays(page, publisher, channel, 3)
    assert max(took) < 1, took
    assert page.evaluate("window.socketsOpened") == opened
    # The move is remembered for the session: the next page of the tab starts on the stream.
    assert page.evaluate("sessionStorage.getItem('pushgateway:transport')") is not None
    page.close()
