"""Legacy realm mode in Chromium: the Faye client is loaded on first subscribe, with SRI."""

import base64
import hashlib
import json
import re
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.servers]

FAYE_PATH = "/bayeux/static/faye-browser-1.1.2-fanout1-min.js"
STAND_IN = b"""
window.fakeFaye = {clients: []};
window.Faye = {Client: function (url, options) {
  this.url = url; this.options = options; this.subs = {}; this.handlers = {};
  window.fakeFaye.clients.push(this);
}};
Faye.Client.prototype.on = function (event, handler) { this.handlers[event] = handler; };
Faye.Client.prototype.subscribe = function (path, callback) {
  this.subs[path] = callback;
  const done = Promise.resolve();
  done.cancel = () => { delete this.subs[path]; };
  return done;
};
Faye.Client.prototype.disconnect = function () {};
"""
START = {"epoch": "", "seq": 0}
INTEGRITY = "sha384-" + base64.b64encode(hashlib.sha384(STAND_IN).digest()).decode()


@pytest.fixture
def faye_cdn():
    """Serves the stand-in Faye client where Fanout's CDN would, with CORS for SRI."""
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            found = self.path == FAYE_PATH
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/javascript")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            if found:
                self.wfile.write(STAND_IN)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.requests = requests
    yield server
    server.shutdown()


def realm_daphne(start_daphne, faye_cdn, integrity):
    """The demo in legacy realm mode, its Faye client served by the stand-in CDN."""
    return start_daphne(
        PUSHGATEWAY_BACKEND="fanout",
        FANOUT_REALM="myrealm",
        FANOUT_KEY=base64.b64encode(b"k" * 32).decode(),
        FANOUT_FAYE_URL=faye_cdn.url + "/bayeux",
        FANOUT_FAYE_INTEGRITY=integrity,
    )


def test_faye_client_loads_on_first_subscribe_with_integrity(browser, start_daphne, faye_cdn):
    daphne = realm_daphne(start_daphne, faye_cdn, INTEGRITY)
    html = urllib.request.urlopen(daphne.url + "/").read().decode()
    config = re.search(r'<script id="pushgateway-config"[^>]*>(.*?)</script>', html).group(1)
    assert json.loads(config)["transport"] == "faye"

    page = browser.new_page()
    page.goto(daphne.url + "/events.json")  # any page of the site: same origin
    config = json.dumps({**json.loads(config), "positions": {"comments-1": START, "events": START}})
    page.set_content(
        f'<script id="pushgateway-config" type="application/json">{config}</script>'
        f'<script src="{daphne.url}/static/pushgateway/pushgateway.js"></script>'
    )
    page.wait_for_function("window.PushGateway !== undefined")
    assert page.locator("script[src*=faye]").count() == 0
    assert faye_cdn.requests == []

    # Faye confirms no positions: once subscribed, the page asks the positions view.
    with page.expect_response(lambda r: "/pushgateway/positions/" in r.url) as checked:
        page.evaluate(
            """() => {
                window.heard = [];
                PushGateway.subscribe("comments-1", (event) => window.heard.push(event));
                PushGateway.subscribe("events", () => {});
            }"""
        )
    assert checked.value.json()["positions"] == {"comments-1": START, "events": START}
    script = page.locator("script[src*=faye]")
    expect(script).to_have_count(1)
    assert script.get_attribute("src") == faye_cdn.url + FAYE_PATH
    assert script.get_attribute("integrity") == INTEGRITY
    assert script.get_attribute("crossorigin") == "anonymous"
    page.wait_for_function("window.fakeFaye && window.fakeFaye.clients.length === 1")
    client = page.evaluate(
        "() => { const c = fakeFaye.clients[0];"
        " return {url: c.url, options: c.options, subs: Object.keys(c.subs).sort()}; }"
    )
    assert client == {
        "url": faye_cdn.url + "/bayeux",
        "options": {"transportMode": "fallback"},
        "subs": ["/comments-1", "/events"],
    }
    expect(page.locator("script[src*=faye]")).to_have_count(1)
    assert faye_cdn.requests == [FAYE_PATH]

    position = {"epoch": "e1", "seq": 1}  # the first hint on a channel
    frame = {"type": "message", "channel": "comments-1", "id": "1", "data": {"pk": "5"}}
    frame["position"] = position
    page.evaluate("(frame) => fakeFaye.clients[0].subs['/comments-1'](frame)", frame)
    heard = page.evaluate("window.heard")
    assert [(e["reason"], e["data"]) for e in heard] == [("message", {"pk": "5"})]
    page.close()


def test_a_tampered_faye_client_is_refused_by_the_browser(browser, start_daphne, faye_cdn):
    wrong = "sha384-" + base64.b64encode(hashlib.sha384(b"other").digest()).decode()
    daphne = realm_daphne(start_daphne, faye_cdn, wrong)
    page = browser.new_page()
    page.goto(daphne.url + "/")  # the event list subscribes to "events" at once
    expect(page.locator("#push-state")).to_have_attribute("data-state", "waiting")
    assert page.evaluate("typeof window.Faye") == "undefined"
    page.close()
