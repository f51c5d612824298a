"""What a page learns at render time (watch + the tag) and from the positions view."""

import json
import re
import threading
import time

import pytest
from django.template import Context, Template
from django.test import Client, RequestFactory

import pushgateway
from channels_app import views
from pushgateway import InvalidChannelName
from pushgateway.backends import get_backend
from pushgateway.pages import DEFAULT_WATCH_TIMEOUT, MAX_WAITING_READS
from pushgateway.protocol import Position

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


def silent_store(monkeypatch):
    """The backend's position reads hang (a Redis that stopped answering) until the event
    returned is set."""
    answer = threading.Event()

    def read_positions(channels):
        answer.wait(10)
        return dict.fromkeys(channels, Position("e", 1))

    monkeypatch.setattr(get_backend(), "read_positions", read_positions)
    return answer


def timed_watch(*channels):
    request = RequestFactory().get("/")
    started = time.monotonic()
    positions = pushgateway.watch(request, *channels)
    return time.monotonic() - started, positions, request


def test_watch_renders_without_positions_when_the_store_is_silent(settings, monkeypatch):
    settings.PUSHGATEWAY = {**settings.PUSHGATEWAY, "OPTIONS": {"WATCH_TIMEOUT": 0.1}}
    answer = silent_store(monkeypatch)
    try:
        took, positions, request = timed_watch("comments-1")
        assert 0.1 <= took < 0.3  # the deadline, not the connection's 5 s timeout
        assert positions == {"comments-1": None}
        assert render(request)["positions"] == {"comments-1": None}  # the page resyncs once
        # More renders while it stays silent: past the reads already waiting, none waits.
        for _ in range(MAX_WAITING_READS - 1):
            timed_watch("comments-1")
        took, positions, _ = timed_watch("comments-1")
        assert took < 0.05 and positions == {"comments-1": None}
    finally:
        answer.set()
    # The store answers again: renders get positions.
    deadline = time.monotonic() + 5
    while timed_watch("comments-1")[1]["comments-1"] is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert timed_watch("comments-1")[1] == {"comments-1": Position("e", 1)}


def test_watch_waits_a_fraction_of_a_second_by_default():
    assert 0 < DEFAULT_WATCH_TIMEOUT < 0.5


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


def post_positions(client, channels, tokens=None, **extra):
    body = {"channels": channels, **({"tokens": tokens} if tokens is not None else {})}
    return client.post("/pushgateway/positions/", body, content_type="application/json", **extra)


def test_positions_view_takes_tokens_in_a_post_body_not_the_url():
    csrf_checking = Client(enforce_csrf_checks=True)  # read-only: no CSRF token needed
    token = pushgateway.make_token("private-pv")
    ok = post_positions(csrf_checking, ["private-pv", "pv-a"], {"private-pv": token})
    assert ok.status_code == 200 and ok["Cache-Control"] == "no-store"
    assert set(ok.json()["positions"]) == {"private-pv", "pv-a"} and ok.json()["errors"] == {}
    for tokens in (None, {"private-pv": "forged"}, {"private-other": token}):
        body = post_positions(csrf_checking, ["private-pv"], tokens).json()
        assert body == {"positions": {}, "errors": {"private-pv": "forbidden"}}


def test_tokens_in_the_query_string_still_work_but_are_deprecated(client, caplog, monkeypatch):
    monkeypatch.setattr(views, "_warned", False)
    token = pushgateway.make_token("private-pv")
    response = get_positions(client, f"private-pv:{token}")
    assert "private-pv" in response.json()["positions"]
    assert response["Deprecation"] == "true"
    assert "tokens in the positions view's query string" in caplog.text
    for item in ("private-pv", "private-pv:forged", f"private-other:{token}"):
        body = get_positions(client, item).json()
        assert body["positions"] == {} and list(body["errors"].values()) == ["forbidden"]
    assert "Deprecation" not in get_positions(client, "pv-a")  # public channels: as ever


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[",
        b"[]",
        b"null",
        b"[" * 5000,
        b'{"channels": "pv-a"}',
        b'{"channels": [1]}',
        b'{"channels": [["pv-a"]]}',
        b'{"channels": ["pv-a"], "tokens": []}',
        b'{"channels": ["pv-a"], "tokens": {"pv-a": 1}}',
        b'{"channels": ["' + b"x" * 70000 + b'"]}',
        b"\xff\xfe",
        json.dumps({"channels": [f"c{n}" for n in range(101)]}).encode(),
    ],
)
def test_a_bad_positions_body_is_a_400_not_a_500(client, body):
    response = client.post("/pushgateway/positions/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"].startswith(("expected ", "at most 100 channels"))


@pytest.mark.parametrize(
    "body",
    [
        {"channels": ["\ud800", "has space", ""]},
        {"channels": ["private-x"], "tokens": {"private-x": "private-x:\ud800:abc"}},
        {"channels": [], "tokens": {"\ud800": ""}},
    ],
)
def test_bad_names_and_tokens_in_a_body_are_answered(client, body):
    response = post_positions(client, body["channels"], body.get("tokens"))
    assert response.status_code == 200 and response.json()["positions"] == {}


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
    assert client.put("/pushgateway/positions/").status_code == 405


@pytest.mark.parametrize(("channels", "cached"), [(["private-inbox-3"], "private"), (["x"], None)])
def test_a_page_given_tokens_is_not_for_shared_caches(channels, cached):
    from django.http import HttpResponse

    from pushgateway.middleware import ClientIdMiddleware

    def view(request):
        pushgateway.watch(request, *channels)
        response = HttpResponse("page")
        response["Cache-Control"] = "public, max-age=60"  # a view that meant well
        return response

    response = ClientIdMiddleware(view)(RequestFactory().get("/"))
    if cached is None:
        assert response["Cache-Control"] == "public, max-age=60"
    else:
        assert response["Cache-Control"] == "max-age=60, private"
