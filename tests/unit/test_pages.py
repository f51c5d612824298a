"""What a page learns at render time (watch + the tag) and from the positions view."""

import json
import re

import pytest
from django.template import Context, Template
from django.test import RequestFactory

import pushgateway
from pushgateway import InvalidChannelName
from pushgateway.backends import get_backend

pytestmark = pytest.mark.matrix  # depends on the Python or Django version


def config_of(html):
    return json.loads(re.search(r'application/json">(.*?)</script>', html).group(1))


def render(request):
    template = Template("{% load pushgateway %}{% pushgateway_script %}")
    return config_of(template.render(Context({"request": request})))


def test_watch_renders_the_positions_read_before_the_data(outbox):
    pushgateway.publish("comments-1", {"pk": "1"})
    request = RequestFactory().get("/")
    positions = pushgateway.watch(request, "comments-1", "events")
    pushgateway.publish("comments-1", {"pk": "2"})  # after the read: the page must see it
    config = render(request)
    assert config["positions"] == {
        "comments-1": positions["comments-1"].as_json(),
        "events": {"epoch": "", "seq": 0},
    }
    current = get_backend().read_positions(["comments-1"])["comments-1"]
    assert positions["comments-1"].is_behind(current)


def test_watch_renders_tokens_for_private_channels_only():
    request = RequestFactory().get("/")
    pushgateway.watch(request, "private-inbox-4", "public")
    tokens = render(request)["tokens"]
    assert list(tokens) == ["private-inbox-4"]
    from pushgateway.tokens import check_token

    assert check_token("private-inbox-4", tokens["private-inbox-4"])


def test_a_page_that_watches_nothing_renders_no_positions():
    config = render(RequestFactory().get("/"))
    assert "positions" not in config and "tokens" not in config


def test_watch_rejects_bad_names():
    with pytest.raises(InvalidChannelName):
        pushgateway.watch(RequestFactory().get("/"), "no spaces")


def get_positions(client, *items):
    query = "&".join(f"c={item}" for item in items)
    return client.get(f"/pushgateway/positions/?{query}")


def test_positions_view_answers_many_channels_in_one_request(client, outbox):
    pushgateway.publish("pv-a", 1)
    pushgateway.publish("pv-a", 2)
    response = get_positions(client, "pv-a", "pv-b")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    [epoch] = {body["positions"]["pv-a"]["epoch"]}
    assert body == {
        "positions": {"pv-a": {"epoch": epoch, "seq": 2}, "pv-b": {"epoch": "", "seq": 0}},
        "errors": {},
    }


def test_positions_view_wants_tokens_for_private_channels(client):
    token = pushgateway.make_token("private-pv")
    ok = get_positions(client, f"private-pv:{token}").json()
    assert "private-pv" in ok["positions"] and ok["errors"] == {}
    for item in ("private-pv", "private-pv:forged", f"private-other:{token}"):
        body = get_positions(client, item).json()
        assert body["positions"] == {} and list(body["errors"].values()) == ["forbidden"]


@pytest.mark.parametrize(
    "query",
    ["c=has%20space", "c=", "c=%ED%A0%80", "c=" + "x" * 500, "c=private-x:%ED%A0%80", ""],
)
def test_positions_view_answers_bad_input_without_a_500(client, query):
    response = client.get(f"/pushgateway/positions/?{query}")
    assert response.status_code == 200
    assert response.json()["positions"] == {}


def test_positions_view_limits_the_number_of_channels(client):
    response = get_positions(client, *[f"c{n}" for n in range(101)])
    assert response.status_code == 400
    assert "at most 100 channels" in response.json()["error"]
    assert client.post("/pushgateway/positions/").status_code == 405
