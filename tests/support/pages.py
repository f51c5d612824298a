"""Pages in Chromium for the system tests: the demo driven as a user does, and a page of
clients, a client (and its socket) per channel."""

import uuid

from playwright.sync_api import expect


def new_event(page, base_url, title=None):
    page.goto(base_url + "/")
    page.fill("#id_title", title or f"Event {uuid.uuid4().hex[:8]}")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_be_visible()
    return page.url


def post_comment(page, event_url, body):
    page.goto(event_url)
    page.fill("#id_author", "Tester")
    page.fill("#id_body", body)
    page.click("button[type=submit]")
    expect(page.locator("#comments li", has_text=body)).to_have_count(1)


# Each client starts from the positions the positions view gives now, as pushgateway.watch()
# would render them; every callback goes to window.calls with the page's clock (comparable
# with time.time() x 1000). `options` go to each createClient, `throttle` to each subscribe.
# Each client has a connection of its own (share: false; clients of one page share one
# otherwise, as tabs do), which is what these tests are about.
CLIENTS = """async ({channels, options, throttle}) => {
    const base = JSON.parse(document.getElementById("pushgateway-config").textContent);
    const query = channels.map((c) => "c=" + c).join("&");
    const {positions} = await (await fetch(base.positionsUrl + "?" + query)).json();
    window.calls = [];
    window.clients = channels.map((channel) => {
        const rendered = {[channel]: positions[channel]};
        const client = PushGateway.createClient(
            {...base, share: false, ...options, positions: rendered});
        const record = (e) => window.calls.push(
            {channel: e.channel, reason: e.reason, at: performance.timeOrigin + performance.now()});
        client.subscribe(channel, record, {throttle});
        return client;
    });
}"""


def open_clients(page, channels, options=None, throttle=500) -> None:
    """A client per channel on `page`, once every one of them is connected."""
    arg = {"channels": list(channels), "options": options or {}, "throttle": throttle}
    page.evaluate(CLIENTS, arg)
    all_connected(page)


# One client on every channel, from the positions the positions view gives now; callbacks
# recorded as CLIENTS records them.
CLIENT = """async ({channels, options, throttle}) => {
    const base = JSON.parse(document.getElementById("pushgateway-config").textContent);
    const response = await fetch(base.positionsUrl, {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify({channels})});
    const {positions} = await response.json();
    window.calls = [];
    const client = PushGateway.createClient({...base, ...options, positions});
    const record = (e) => window.calls.push(
        {channel: e.channel, reason: e.reason, at: performance.timeOrigin + performance.now()});
    for (const channel of channels) client.subscribe(channel, record, {throttle});
    window.clients = [client];
}"""


def open_client(page, channels, options=None, throttle=500) -> None:
    """One client on all `channels` (at most 100: the positions view's limit), once connected."""
    arg = {"channels": list(channels), "options": options or {}, "throttle": throttle}
    page.evaluate(CLIENT, arg)
    all_connected(page)


def all_connected(page) -> None:
    page.wait_for_function("clients.every((c) => c.state === 'connected')", timeout=30000)


def calls(page) -> list[tuple[str, str]]:
    """(channel, reason) of every callback so far."""
    return [(call["channel"], call["reason"]) for call in page.evaluate("calls")]


# A browser whose WebSocket fails at once, as a proxy that refuses the upgrade looks to a page.
REFUSED_WEBSOCKET = """window.WebSocket = class {
    constructor(url) {
        window.socketsTried = (window.socketsTried || 0) + 1;
        setTimeout(() => this.onclose && this.onclose({code: 1006, reason: ""}), 0);
    }
    send() {}
    close() {}
};"""
