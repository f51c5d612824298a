"""End to end in headless Chromium: a comment posted in one page appears in another, also when
the two pages are served by two processes on PostgreSQL."""

import json
import os
import signal
import time
import uuid

import pytest
from django.conf import settings
from django.core import signing
from playwright.sync_api import expect

import pushgateway
from tests.support.servers import Daphne, Uvicorn, run_python

pytestmark = [pytest.mark.browser, pytest.mark.servers]


@pytest.fixture(
    params=["in-memory layer", "redis layer", "fanout via pushpin", "two processes on postgresql"]
)
def sites(request, start_daphne):
    """Where the posting page and the watching page are served from: (poster, watcher).

    One daphne, or a real Pushpin in front of it, serves both; or two daphne processes share
    Redis and a PostgreSQL database, as on two hosts.
    """
    if request.param == "two processes on postgresql":
        redis = request.getfixturevalue("redis")
        database = request.getfixturevalue("postgres_database")
        poster, watcher = (start_daphne(redis.url, database=database) for _ in range(2))
        return poster.url, watcher.url
    if request.param == "redis layer":
        server = start_daphne(request.getfixturevalue("redis").url)
    elif request.param == "fanout via pushpin":
        server = request.getfixturevalue("pushpin_in_front")()
    else:
        server = start_daphne()
    return server.url, server.url


def expect_connected(page):
    expect(page.locator("#push-state")).to_have_attribute("data-state", "connected")


def test_comment_posted_in_one_page_appears_in_the_other(browser, sites):
    poster_site, watcher_site = sites
    poster = browser.new_page()
    poster.goto(poster_site + "/")
    poster.fill("#id_title", "Browser test")
    poster.click("button[type=submit]")
    expect(poster.locator("h1")).to_have_text("Browser test")
    expect_connected(poster)

    watcher = browser.new_page()
    watcher.goto(poster.url.replace(poster_site, watcher_site, 1))
    expect_connected(watcher)
    # Mark the document (a reload would lose the mark) and record what the page is told.
    watcher.evaluate(
        """() => {
            window.mark = "same document";
            window.heard = [];
            const channel = document.querySelector("#comments").dataset.channel;
            PushGateway.subscribe(channel, (event) => window.heard.push(event));
        }"""
    )

    poster.fill("#id_author", "Grace")
    poster.fill("#id_body", "Pushed, not polled")
    poster.click("button[type=submit]")

    comment = watcher.locator("#comments li")
    expect(comment).to_have_count(1)
    expect(comment).to_contain_text("Grace")
    expect(comment).to_contain_text("Pushed, not polled")
    assert watcher.evaluate("window.mark") == "same document"
    heard = watcher.evaluate("window.heard")
    assert [(e["reason"], e["data"]["model"], e["data"]["action"]) for e in heard] == [
        ("message", "demo.comment", "created")
    ]
    poster.close()
    watcher.close()


def test_event_list_updates_its_comment_count(browser, sites):
    poster_site, watcher_site = sites
    title = f"Counted {uuid.uuid4().hex[:8]}"  # the database is shared by the suite
    page = browser.new_page()
    page.goto(poster_site + "/")
    page.fill("#id_title", title)
    page.click("button[type=submit]")
    event_url = page.url

    listing = browser.new_page()
    listing.goto(watcher_site + "/")
    expect_connected(listing)
    row = listing.locator("#events li", has_text=title)
    expect(row).to_contain_text("0 comments")

    page.goto(event_url)
    page.fill("#id_author", "Ada")
    page.fill("#id_body", "One")
    page.click("button[type=submit]")
    expect(row).to_contain_text("1 comment")
    page.close()
    listing.close()


def test_the_tab_that_posts_a_comment_is_not_called_back_for_it(browser, start_daphne):
    daphne = start_daphne()
    poster, watcher = browser.new_page(), browser.new_page()
    poster.goto(daphne.url + "/")
    poster.fill("#id_title", "Self-echo")
    poster.click("button[type=submit]")
    expect(poster.locator("h1")).to_have_text("Self-echo")
    watcher.goto(poster.url)
    for page in (poster, watcher):
        expect_connected(page)
        page.evaluate(
            """() => {
                window.heard = [];
                const channel = document.querySelector("#comments").dataset.channel;
                PushGateway.subscribe(channel, (event) => window.heard.push(event.reason));
            }"""
        )

    poster.fill("#id_author", "Ada")
    poster.fill("#id_body", "Posted with fetch")
    poster.click("button[type=submit]")  # the demo posts it with PushGateway.fetch
    for page in (poster, watcher):
        expect(page.locator("#comments li", has_text="Posted with fetch")).to_have_count(1)
    watcher.wait_for_timeout(1000)  # any late callback would have come by now
    assert watcher.evaluate("window.heard") == ["message"]
    assert poster.evaluate("window.heard") == []  # it shows what it wrote; no refetch
    assert poster.locator("#push-log li", has_text="message").count() == 0
    expect(watcher.locator("#push-log li", has_text="message")).to_have_count(1)


def test_code_that_runs_before_the_deferred_module_can_wait_for_it(browser, start_daphne):
    """{% pushgateway_script %} loads the module with `defer`: an inline script after the tag
    runs before it, finds no PushGateway yet, and waits for the ready event instead."""
    daphne = start_daphne()
    page = browser.new_page()
    page.goto(daphne.url + "/events.json")
    page.set_content(
        '<script id="pushgateway-config" type="application/json">{}</script>'
        f'<script src="{daphne.url}/static/pushgateway/pushgateway.js" defer></script>'
        "<script>"
        "window.before = typeof PushGateway;"
        "document.addEventListener('pushgateway:ready', (e) => {"
        "  window.ready = typeof e.detail.subscribe; });"
        "</script>"
    )
    page.wait_for_function("window.ready !== undefined")
    assert page.evaluate("[window.before, window.ready]") == ["undefined", "function"]


def test_a_private_channel_polls_with_its_token_in_the_body_and_renews_it_from_the_page(
    browser, start_daphne, monkeypatch
):
    """The page's token is two hours old (expired): the server refuses it on the socket and in
    the positions view, and the module fetches the page again for a fresh one. The demo has no
    private channel, so the page's second rendering is routed: what a view that watch()es
    the channel renders, with a token the server made."""
    daphne = start_daphne(SECRET_KEY=settings.SECRET_KEY)
    channel = f"private-inbox-{uuid.uuid4().hex[:8]}"
    two_hours_ago = time.time() - 7200
    with monkeypatch.context() as past:
        past.setattr(signing.time, "time", lambda: two_hours_ago)
        expired = pushgateway.make_token(channel)
    fresh = pushgateway.make_token(channel)
    page = browser.new_page()
    page.goto(daphne.url + "/")
    posts, frames = [], []
    page.on("request", lambda r: "/positions/" in r.url and posts.append(r))
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(f)))
    config = json.dumps({"tokens": {channel: fresh}})
    html = f'<script id="pushgateway-config" type="application/json">{config}</script>'
    page.route(page.url, lambda route: route.fulfill(body=html, content_type="text/html"))
    page.evaluate(
        """([channel, token, fresh]) => {
            // share: false: each client has a connection of its own, as the test needs.
            window.pg = PushGateway.createClient({tokens: {[channel]: token}, share: false});
            window.pg.subscribe(channel, () => {});
            // A second client that cannot open a socket polls the positions view with it.
            const WebSocket = function () { throw new Error("refused"); };
            const polling = PushGateway.createClient({WebSocket, pollDown: 300, share: false});
            polling.subscribe(channel, () => {}, {token: fresh});
        }""",
        [channel, expired, fresh],
    )
    answers = []
    for _ in range(50):  # at most 5 s
        answers = [json.loads(f) for f in frames if channel in f]
        if any(a["type"] == "subscribed" for a in answers) and posts:
            break
        page.wait_for_timeout(100)
    assert [a.get("code", a["type"]) for a in answers] == ["forbidden", "subscribed"]
    assert page.evaluate("pg.state") == "connected"
    assert posts and all(r.method == "POST" and "token" not in r.url for r in posts)
    assert json.loads(posts[0].post_data) == {"channels": [channel], "tokens": {channel: fresh}}
    answer = posts[0].response().json()
    assert channel in answer["positions"] and answer["errors"] == {}
    page.close()


def raw_socket(page, site_url: str, channel: str) -> str:
    """A plain WebSocket in `page` subscribed to `channel`, every frame it gets parsed into
    `window.got`; returns the extensions it negotiated, once subscribed."""
    return page.evaluate(
        """([url, channel]) => new Promise((resolve) => {
            window.got = [];
            const ws = new WebSocket(url);
            ws.onopen = () => ws.send(JSON.stringify({type: "subscribe", channel}));
            ws.onmessage = (event) => {
                const frame = JSON.parse(event.data);
                window.got.push(frame);
                if (frame.type === "subscribed") resolve(ws.extensions);
            };
        })""",
        [site_url.replace("http", "ws", 1) + "/ws/pushgateway/", channel],
    )


# Sizes around the frame header's length forms: 7-bit and 16-bit (a hint's data is at most
# MAX_DATA_BYTES; 64-bit lengths are checked by tests/integration/test_server_adapters.py).
PADS = [0, 60, 130, 4000, 3]


@pytest.mark.parametrize("server", [Daphne, Uvicorn], ids=["daphne", "uvicorn"])
def test_hints_reach_chromium_as_valid_messages_with_and_without_permessage_deflate(
    browser, redis, start_daphne, server
):
    """Chromium offers permessage-deflate on every socket. uvicorn accepts it, so hints go
    through its `send` and are compressed; daphne declines it, so hints are frames the hub
    built once and wrote to the transport itself. Either way the page gets every hint whole,
    in order, at both length forms of the frame header a hint can take."""
    site = start_daphne(redis.url, server=server)
    page = browser.new_page()
    page.goto(site.url + "/")
    extensions = raw_socket(page, site.url, "deflate")
    if server is Uvicorn:
        assert extensions.startswith("permessage-deflate")
    else:
        assert extensions == ""
    publish = f"import pushgateway\nfor n, pad in enumerate({PADS}): "
    publish += "pushgateway.publish('deflate', {'n': n, 'pad': 'x' * pad})"
    assert run_python(publish, redis.url).returncode == 0
    page.wait_for_function(f"window.got.length > {len(PADS)}")
    hints = page.evaluate("window.got.slice(1)")
    assert [(h["type"], h["data"]["n"], len(h["data"]["pad"])) for h in hints] == [
        ("message", n, pad) for n, pad in enumerate(PADS)
    ]
    page.close()


@pytest.mark.parametrize("server", [Daphne, Uvicorn], ids=["daphne", "uvicorn"])
def test_a_burst_read_off_redis_at_once_reaches_chromium_whole_and_in_order(
    browser, redis, start_daphne, server
):
    """The server stopped while 100 hints are published: when it runs again it reads them off
    Redis at once and its hub writes them to the socket together (several frames per write
    under daphne; through uvicorn's `send`, compressed, one by one). The page gets each hint
    whole, in order. (The pause may also make the hub check positions and send `resync`,
    which the browser module holds back while the hints are on their way.)"""
    site = start_daphne(redis.url, server=server)
    page = browser.new_page()
    page.goto(site.url + "/")
    channel = f"burst-{uuid.uuid4().hex[:8]}"
    raw_socket(page, site.url, channel)
    page.wait_for_timeout(1000)  # past the check after the join
    pid = site.process.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        publish = (
            f"import pushgateway\nfor n in range(100): pushgateway.publish({channel!r}, {{'n': n}})"
        )
        assert run_python(publish, redis.url).returncode == 0
    finally:
        os.kill(pid, signal.SIGCONT)
    page.wait_for_function("window.got.filter((f) => f.type === 'message').length >= 100")
    frames = page.evaluate("window.got.slice(1)")
    hints = [f for f in frames if f["type"] == "message"]
    assert [(h["data"]["n"], h["position"]["seq"]) for h in hints] == [
        (n, n + 1) for n in range(100)
    ]
    assert {f["type"] for f in frames} <= {"message", "resync"}
    page.close()
