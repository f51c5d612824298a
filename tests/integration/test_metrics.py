"""Prometheus metrics of a running daphne, scraped while hints flow and drops happen."""

import contextlib
import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import recv_json, run_python, subscribe

pytestmark = pytest.mark.servers


def scrape(server) -> dict:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return values


def scrape_until(server, name: str, value: float, timeout: float = 20) -> dict:
    """Scrape until the metric `name` reaches `value` (the sender retries for seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        values = scrape(server)
        if values.get(name) == value or time.monotonic() > deadline:
            assert values.get(name) == value, (name, values.get(name))
            return values
        time.sleep(0.5)


def post_comment(server, event: int, body: str) -> None:
    """The demo's comment form, posted as a browser would (CSRF cookie and field)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{server.url}/events/{event}/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "author": "m", "body": body}
    ).encode()
    request = urllib.request.Request(
        f"{server.url}/events/{event}/", data=data, headers={"Accept": "application/json"}
    )
    assert opener.open(request, timeout=10).status == 201


def test_counters_move_as_the_traffic_says(start_daphne, own_redis):
    server = start_daphne(own_redis.url, PUSHGATEWAY_METRICS="1")
    made = run_python(
        "from demo.models import Event; print(Event.objects.create(title='metrics').pk)",
        own_redis.url,
        env={"SQLITE_PATH": server.env["SQLITE_PATH"]},
    )
    event = int(made.stdout.strip().splitlines()[-1])
    before = scrape(server)
    stack = contextlib.ExitStack()
    sockets = [stack.enter_context(server.connect()) for _ in range(3)]
    for ws in sockets:
        subscribe(ws, f"comments-{event}")
    after_connect = scrape(server)
    assert after_connect["pushgateway_sockets"] == before.get("pushgateway_sockets", 0) + 3
    assert (
        after_connect["pushgateway_subscriptions"] - before.get("pushgateway_subscriptions", 0) == 3
    )

    for n in range(2):
        post_comment(server, event, f"counted {n}")
        for ws in sockets:
            assert recv_json(ws)["type"] == "message"
    flowing = scrape(server)
    # Each comment: its own channel, comments-<event>, events.
    assert flowing["pushgateway_hints_published_total"] == 6
    assert flowing["pushgateway_hints_sent_total"] == 6
    assert flowing["pushgateway_frames_delivered_total"] == 6  # 2 hints x 3 sockets
    assert flowing["pushgateway_delivery_lag_seconds_count"] == 2
    assert flowing["pushgateway_channels_joined"] >= 1

    own_redis.stop()
    post_comment(server, event, "while Redis is down")  # the save still succeeds
    dropping = scrape_until(server, "pushgateway_hints_dropped_total{reason=failed}", 3)
    assert dropping["pushgateway_hints_published_total"] == 9
    own_redis.start()
    healed = scrape_until(server, "pushgateway_channels_repaired_total", 3)
    assert healed["pushgateway_layer_outages_total"] >= 1
    stack.close()
    time.sleep(0.5)
    assert scrape(server)["pushgateway_sockets"] == before.get("pushgateway_sockets", 0)


def test_metrics_are_off_by_default_and_cost_no_import(start_daphne):
    server = start_daphne()
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.url + "/metrics", timeout=10)
    assert caught.value.code == 404
    code = (
        "import sys, pushgateway\n"
        "pushgateway.publish('x', 1)\n"
        "print('prometheus_client' in sys.modules)"
    )
    assert run_python(code, None).stdout.strip().endswith("False")
