"""A page is never stale and never refetches for nothing: real servers, real Chromium.

Each test breaks something a real deployment breaks (Redis restarts, daphne or Pushpin
restarts, a hosted Fanout answering 503, a proxy refusing WebSockets, a page with more
channels than a connection may carry) and checks what the page's callbacks did.
"""

import json
import os
import signal
import time
import urllib.request
import uuid

import pytest
from playwright.sync_api import expect

from demo import pushpin as pushpin_config
from pushgateway.constants import STREAM_PATH
from pushgateway.pages import DEFAULT_WATCH_TIMEOUT
from tests.support.fake_fanout import FakeFanout
from tests.support.pages import (
    REFUSED_WEBSOCKET,
    all_connected,
    calls,
    new_event,
    open_client,
    open_clients,
    post_comment,
)
from tests.support.servers import Pushpin, run_python

pytestmark = [pytest.mark.browser, pytest.mark.servers]

# The page's own clock, comparable with time.time() on this machine.
RECORDER = """(channel) => {
    window.heard = [];
    PushGateway.subscribe(channel, (event) => window.heard.push(
        {reason: event.reason, data: event.data, at: performance.timeOrigin + performance.now()}));
}"""


def gave_up(log, channel):
    """Whether the sender's log says it gave up a hint on `channel`."""
    return any(
        "gave up on" in line and f"{channel}," in line.replace(")", ",")
        for line in log.splitlines()
    )


def watch(page, event_url):
    page.goto(event_url)
    expect(page.locator("#push-state")).to_have_attribute("data-state", "connected")
    channel = page.locator("#comments").get_attribute("data-channel")
    page.evaluate(RECORDER, channel)
    return channel


@pytest.mark.parametrize(
    ("layer", "transport"),
    [("pubsub", "websocket"), ("core", "websocket"), ("pubsub", "stream")],
)
def test_a_hint_published_while_redis_is_down_reaches_the_page_once_it_is_back(
    browser, start_daphne, own_redis, layer, transport
):
    daphne = start_daphne(own_redis.url, REDIS_LAYER=layer)
    poster, watcher = browser.new_page(), browser.new_page()
    event_url = new_event(poster, daphne.url)
    if transport == "stream":
        watcher.add_init_script(REFUSED_WEBSOCKET)
    watch(watcher, event_url)
    assert watcher.evaluate("PushGateway.transport") == transport

    own_redis.stop()
    # Saved while Redis is down: the save succeeds, the hint cannot go out.
    poster.goto(event_url)
    poster.fill("#id_author", "Tester")
    poster.fill("#id_body", "Saved during the outage")
    poster.click("button[type=submit]")
    expect(poster.locator("#comments li", has_text="during the outage")).to_have_count(1)
    time.sleep(max(0, 3 - 0.5))
    own_redis.start()
    back = time.time()

    comment = watcher.locator("#comments li", has_text="Saved during the outage")
    expect(comment).to_have_count(1, timeout=5000)
    heard = watcher.evaluate("window.heard")
    assert heard and heard[0]["at"] / 1000 - back < 5
    assert watcher.evaluate("document.querySelector('#push-state').dataset.state") == "connected"

    post_comment(poster, event_url, "After the outage")
    expect(watcher.locator("#comments li", has_text="After the outage")).to_have_count(1)


@pytest.mark.parametrize("transport", ["websocket", "stream"])
def test_a_comment_saved_between_render_and_subscribe_shows_without_reload(
    browser, start_daphne, transport
):
    daphne = start_daphne()
    poster = browser.new_page()
    event_url = new_event(poster, daphne.url)
    # The page as the server rendered it, before a comment is saved...
    rendered = urllib.request.urlopen(event_url).read().decode()
    rendered = rendered.replace('"transport": "auto"', f'"transport": "{transport}"')
    post_comment(poster, event_url, "Between render and subscribe")
    # ...and only then its scripts run and subscribe (same origin, the HTML of that render).
    watcher = browser.new_page()
    watcher.goto(daphne.url + "/events.json")
    watcher.set_content(rendered)
    expect(watcher.locator("#push-state")).to_have_attribute("data-state", "connected")
    subscribed = time.monotonic()
    expect(watcher.locator("#comments li", has_text="Between render")).to_have_count(
        1, timeout=2000
    )
    assert time.monotonic() - subscribed < 2
    assert watcher.evaluate("PushGateway.transport") == transport


# Milliseconds from the request for the page's HTML to its last byte.
HTML_TIME = """() => {
    const [entry] = performance.getEntriesByType("navigation");
    return entry.responseEnd - entry.requestStart;
}"""


def test_a_page_rendered_while_redis_is_stopped_renders_in_time_and_resyncs_once(
    browser, start_daphne, own_redis
):
    daphne = start_daphne(own_redis.url)
    poster = browser.new_page()
    event_url = new_event(poster, daphne.url)
    poster.close()
    own = []  # the page's own time, with Redis answering
    for _ in range(3):
        page = browser.new_page()
        page.goto(event_url)
        own.append(page.evaluate(HTML_TIME))
        page.close()

    watcher = browser.new_page()
    refetches = []
    watcher.on("request", lambda r: refetches.append(r.url) if "comments.json" in r.url else None)
    os.kill(own_redis.process.proc.pid, signal.SIGSTOP)  # a Redis that stops answering
    try:
        watcher.goto(event_url)
        took = watcher.evaluate(HTML_TIME)
    finally:
        os.kill(own_redis.process.proc.pid, signal.SIGCONT)
    deadline = DEFAULT_WATCH_TIMEOUT * 1000
    assert deadline * 0.9 <= took < max(own) + deadline + 500, (took, own)

    # Rendered without a position, the page resyncs once when it subscribes: one refetch.
    expect(watcher.locator("#push-state")).to_have_attribute("data-state", "connected")
    deadline_at = time.monotonic() + 5
    while not refetches and time.monotonic() < deadline_at:
        watcher.wait_for_timeout(100)
    watcher.wait_for_timeout(3000)  # a second refetch would have come by now
    assert len(refetches) == 1
    assert watcher.locator("#push-log .reason").all_inner_texts() == ["resync"]


def restart_with_changes(browser, base_url, stop, start, publish, transport="websocket"):
    """100 clients on 100 channels (on the stream, one client: a browser opens at most six
    HTTP/1.1 connections per origin); the server stops, 10 channels change, it starts again."""
    channels = [f"storm-{uuid.uuid4().hex[:6]}-{n}" for n in range(100)]
    page = browser.new_page()
    page.goto(base_url + "/")
    # pollDown is long so the test sees what the reconnect does, not blind polls while the
    # server is unreachable (those are tested below); a short backoff and restart delay, so
    # it does not wait out long ones.
    options = {"pollDown": 60000, "backoffMax": 1000, "restartDelay": 500, "transport": transport}
    if transport == "stream":
        open_client(page, channels, options)
    else:
        open_clients(page, channels, options)
    time.sleep(2)  # confirmations and the early ping
    assert calls(page) == []

    stop()
    changed = channels[::10]
    publish(changed)
    start()
    all_connected(page)
    time.sleep(3)  # every late callback would have come by now
    called = calls(page)
    page.close()
    return changed, called


@pytest.mark.parametrize("transport", ["websocket", "stream"])
def test_after_a_daphne_restart_only_the_changed_channels_resync(
    browser, start_daphne, redis, transport
):
    daphne = start_daphne(redis.url)

    def publish(channels):
        code = f"import pushgateway\nfor c in {channels!r}: pushgateway.publish(c)"
        assert run_python(code, redis.url).returncode == 0

    changed, called = restart_with_changes(
        browser, daphne.url, daphne.stop, daphne.start, publish, transport
    )
    assert sorted(called) == sorted((c, "resync") for c in changed)


def test_after_a_pushpin_restart_only_the_changed_channels_resync(browser, pushpin_in_front, redis):
    pushpin = pushpin_in_front(redis_url=redis.url)  # positions in Redis, shared

    def publish(channels):
        code = f"import pushgateway\nfor c in {channels!r}: pushgateway.publish(c)"
        env = {"PUSHGATEWAY_BACKEND": "fanout", "GRIP_URL": pushpin.grip_url}
        run_python(code, redis.url, env=env)  # Pushpin is down: these hints are dropped

    changed, called = restart_with_changes(
        browser, pushpin.url, pushpin.stop, lambda: pushpin.start(pushpin.origin.port), publish
    )
    assert sorted(called) == sorted((c, "resync") for c in changed)


def test_a_hint_the_hosted_service_dropped_reaches_the_page_when_it_recovers(
    browser, log_dir, start_daphne
):
    pushpin = Pushpin(log_dir)
    # A hosted publish API that fails in front of a real Pushpin.
    service = FakeFanout(upstream=f"http://127.0.0.1:{pushpin.publish_port}")
    grip_url = pushpin_config.grip_url(service.port, Pushpin.SIG_KEY)
    origin = start_daphne(PUSHGATEWAY_BACKEND="fanout", GRIP_URL=grip_url)
    pushpin.start(origin.port)
    try:
        poster, watcher = browser.new_page(), browser.new_page()
        event_url = new_event(poster, pushpin.url)
        watch(watcher, event_url)
        # Past the early ping (on which the GRIP view would notice the moved position and
        # heal the page by itself): here the sender's repair must do it.
        watcher.wait_for_timeout(2000)

        service.mode, service.failures, service.fail_status = "fail", 10**6, 503
        poster.goto(event_url)
        poster.fill("#id_author", "Tester")
        poster.fill("#id_body", "Dropped by the service")
        poster.click("button[type=submit]")
        # The comment's hints may go out in several batches: wait until the watched
        # channel's own hint is given up.
        channel = watcher.locator("#comments").get_attribute("data-channel")
        deadline = time.monotonic() + 15
        while not gave_up(origin.process.log(), channel) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gave_up(origin.process.log(), channel)
        assert watcher.locator("#comments li").count() == 0

        service.failures = 0
        recovered = time.time()
        expect(watcher.locator("#comments li", has_text="Dropped")).to_have_count(1, timeout=5000)
        [heard] = watcher.evaluate("window.heard")
        assert heard["reason"] == "resync" and heard["at"] / 1000 - recovered < 5
    finally:
        pushpin.stop()
        service.stop()


# Subscribes the page's client to `channels`, counting the callbacks of each.
COUNTER = """(channels) => {
    window.calls = {};
    for (const channel of channels) {
        PushGateway.subscribe(channel, (event) => {
            window.calls[event.channel] = (window.calls[event.channel] || 0) + 1;
        });
    }
}"""


def page_on_300_channels_without_websocket(browser, base_url):
    """A page on 300 channels whose WebSocket is refused; returns it and the positions
    requests it makes, as (channels asked about, HTTP status)."""
    page = browser.new_page()
    page.add_init_script(REFUSED_WEBSOCKET)
    page.route("**" + STREAM_PATH, lambda route: route.abort())  # and the stream
    asked = []

    def positions(response):
        if "/pushgateway/positions/" in response.url:
            body = json.loads(response.request.post_data)  # tokens never in the URL: a POST
            asked.append((len(body["channels"]), response.status))

    page.on("response", positions)
    page.goto(base_url + "/")
    page.evaluate(COUNTER, [f"many-{n}" for n in range(300)])
    return page, asked


# A client of its own (share: false) on 130 channels, counting the WebSockets it opens and its
# callbacks.
CROWDED = """() => {
    const base = JSON.parse(document.getElementById("pushgateway-config").textContent);
    window.opens = 0;
    class Counting extends WebSocket {
        constructor(url) { super(url); window.opens += 1; }
    }
    window.calls = {};
    const client = PushGateway.createClient({...base, WebSocket: Counting, share: false});
    for (let n = 0; n < 130; n++) {
        client.subscribe("crowded-" + n, (e) => {
            window.calls[e.channel] = (window.calls[e.channel] || 0) + 1;
        });
    }
}"""


def page_on_130_channels(browser, base_url):
    """A page with more channels than a connection carries; see CROWDED."""
    page = browser.new_page()
    page.goto(base_url + "/")
    page.evaluate(CROWDED)
    return page


def test_a_page_whose_websocket_is_refused_polls_positions_not_data(browser, start_daphne):
    daphne = start_daphne()
    poster, watcher = browser.new_page(), browser.new_page()
    event_url = new_event(poster, daphne.url)
    refetches = []
    watcher.on("request", lambda r: refetches.append(r.url) if "comments.json" in r.url else None)
    # A proxy in the way closes every WebSocket at once, and every stream: polling is the
    # last resort.
    watcher.route_web_socket("**/ws/pushgateway/", lambda ws: ws.close())
    watcher.route("**" + STREAM_PATH, lambda route: route.abort())
    watcher.goto(event_url)
    channel = watcher.locator("#comments").get_attribute("data-channel")
    watcher.evaluate(RECORDER, channel)
    many, asked = page_on_300_channels_without_websocket(browser, daphne.url)
    crowded = page_on_130_channels(browser, daphne.url)
    watcher.wait_for_timeout(60_000)  # the same quiet minute for every page
    assert refetches == []  # a minute of polling positions, not one data refetch
    assert watcher.evaluate("document.querySelector('#push-state').dataset.state") != "connected"
    # 300 channels: one callback each (their first check: no position was rendered), then
    # quiet; every positions request within the view's limit of 100 channels, none refused.
    counted = many.evaluate("calls")
    assert len(counted) == 300 and max(counted.values()) == 1
    assert asked and all(count <= 100 and status == 200 for count, status in asked)
    assert len(asked) >= 30  # about 4 requests every pollDown (5 s) for 301 channels
    assert many.evaluate("socketsTried") >= 2
    many.close()
    # More channels than a connection carries (100): at most 2 connections, one callback
    # each (a resync or the first poll), then quiet.
    assert crowded.evaluate("opens") <= 2
    counted = crowded.evaluate("calls")
    assert len(counted) == 130 and max(counted.values()) == 1
    crowded.close()

    post_comment(poster, event_url, "Seen by polling")
    saved = time.time()
    expect(watcher.locator("#comments li", has_text="Seen by polling")).to_have_count(
        1, timeout=6000
    )
    [heard] = watcher.evaluate("window.heard")
    assert heard["reason"] == "poll" and heard["at"] / 1000 - saved < 5 + 1
    assert len(refetches) == 1
