"""Legacy realm mode in Chromium: the Faye client is loaded on first subscribe, with SRI, and
subscribes to channel names as Bayeux allows them."""

import base64
import hashlib
import json
import re
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from tests.support.fake_fanout import FakeFanout
from tests.support.servers import run_python

pytestmark = [pytest.mark.browser, pytest.mark.servers]

FAYE_PATH = "/bayeux/static/faye-browser-1.1.2-fanout1-min.js"
# Refuses channel names Faye's grammar refuses (faye-browser 1.x, Grammar.CHANNEL_NAME), as
# the Bayeux server does (405), so the subscription fails.
STAND_IN = b"""
window.fakeFaye = {clients: []};
window.Faye = {Client: function (url, options) {
  this.url = url; this.options = options; this.subs = {}; this.handlers = {};
  window.fakeFaye.clients.push(this);
}};
Faye.CHANNEL_NAME = /^\\/[A-Za-z0-9\\-_!~()$@]+(\\/[A-Za-z0-9\\-_!~()$@]+)*$/;
Faye.Client.prototype.on = function (event, handler) { this.handlers[event] = handler; };
Faye.Client.prototype.subscribe = function (path, callback) {
  if (!Faye.CHANNEL_NAME.test(path)) {
    const refused = Promise.reject(new Error("405:" + path + ":Invalid channel"));
    refused.cancel = () => {};
    return refused;
  }
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


def realm_env(faye_cdn, integrity, **env):
    return {
        "PUSHGATEWAY_BACKEND": "fanout",
        "FANOUT_REALM": "myrealm",
        "FANOUT_KEY": base64.b64encode(b"k" * 32).decode(),
        "FANOUT_FAYE_URL": faye_cdn.url + "/bayeux",
        "FANOUT_FAYE_INTEGRITY": integrity,
        **env,
    }


def realm_daphne(start_daphne, faye_cdn, integrity, **env):
    """The demo in legacy realm mode, its Faye client served by the stand-in CDN."""
    return start_daphne(**realm_env(faye_cdn, integrity, **env))


def realm_page(browser, daphne, channels):
    """A page of the site with the browser module, configured as the site renders it, with
    the positions of `channels` rendered as never published."""
    html = urllib.request.urlopen(daphne.url + "/").read().decode()
    config = re.search(r'<script id="pushgateway-config"[^>]*>(.*?)</script>', html).group(1)
    assert json.loads(config)["transport"] == "faye"
    page = browser.new_page()
    page.goto(daphne.url + "/events.json")  # any page of the site: same origin
    config = json.dumps({**json.loads(config), "positions": dict.fromkeys(channels, START)})
    page.set_content(
        f'<script id="pushgateway-config" type="application/json">{config}</script>'
        f'<script src="{daphne.url}/static/pushgateway/pushgateway.js"></script>'
    )
    page.wait_for_function("window.PushGateway !== undefined")
    return page


def test_faye_client_loads_on_first_subscribe_with_integrity(browser, start_daphne, faye_cdn):
    daphne = realm_daphne(start_daphne, faye_cdn, INTEGRITY)
    page = realm_page(browser, daphne, ["comments-1", "events"])
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


def test_a_dotted_object_channel_reaches_a_faye_page_under_its_bayeux_name(
    browser, start_daphne, faye_cdn
):
    realm_api = FakeFanout()
    env = realm_env(faye_cdn, INTEGRITY, FANOUT_REALM_URL=realm_api.url + "/realm/")
    daphne = start_daphne(**env)
    page = realm_page(browser, daphne, ["demo.comment.42"])
    page.evaluate(
        """() => {
            window.heard = [];
            PushGateway.subscribe("demo.comment.42", (event) => window.heard.push(event));
        }"""
    )
    page.wait_for_function(
        "window.fakeFaye && Object.keys(fakeFaye.clients[0].subs).length", timeout=5000
    )
    assert page.evaluate("Object.keys(fakeFaye.clients[0].subs)") == ["/demo~comment~42"]

    # The object's hint, published by another process of the site in realm mode.
    code = "import pushgateway; pushgateway.publish('demo.comment.42', {'pk': '42'})"
    result = run_python(code, None, env=env)
    assert result.returncode == 0, result.stderr
    [published] = realm_api.published()
    realm_api.stop()
    # Fanout hands it to the Faye subscribers of "/" + its realm channel.
    page.evaluate(
        "([path, frame]) => fakeFaye.clients[0].subs[path](frame)",
        ["/" + published["channel"], published["frame"]],
    )
    heard = page.evaluate("window.heard")
    assert [(e["channel"], e["reason"], e["data"]) for e in heard] == [
        ("demo.comment.42", "message", {"pk": "42"})
    ]
    page.close()


def test_a_tampered_faye_client_is_refused_by_the_browser(browser, start_daphne, faye_cdn):
    wrong = "sha384-" + base64.b64encode(hashlib.sha384(b"other").digest()).decode()
    daphne = realm_daphne(start_daphne, faye_cdn, wrong)
    page = browser.new_page()
    page.goto(daphne.url + "/")  # the event list subscribes to "events" at once
    expect(page.locator("#push-state")).to_have_attribute("data-state", "waiting")
    assert page.evaluate("typeof window.Faye") == "undefined"
    page.close()
