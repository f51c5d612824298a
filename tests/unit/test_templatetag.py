import html as htmlmod
import json
import re

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.template import Context, Template, TemplateSyntaxError
from django.test import RequestFactory

import pushgateway
from pushgateway import InvalidChannelName, tokens
from pushgateway.protocol import Position

pytestmark = pytest.mark.matrix  # depends on the Python or Django version


def render(source):
    return Template("{% load pushgateway %}" + source).render(Context())


def test_renders_json_config_and_module_without_inline_script(settings):
    html = render("{% pushgateway_script %}")
    config = re.search(
        r'<script id="pushgateway-config" type="application/json">(.*?)</script>', html
    )
    assert json.loads(config.group(1)) == {
        "url": "/ws/pushgateway/",
        "throttle": 500,
        "pollDown": 5000,
        "pollUp": 300000,
        "transport": "auto",
        "positionsUrl": "/pushgateway/positions/",
        "streamUrl": "/pushgateway/stream/",
        "positionTtl": 3 * 24 * 3600 * 1000,
    }
    assert '<script src="/static/pushgateway/pushgateway.js" defer></script>' in html
    # Every other script tag is data or has a src: nothing a strict CSP would block.
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag


def test_overrides_and_escaping():
    html = render('{% pushgateway_script throttle=100 url="/ws/</script>" %}')
    assert '</script>"' not in html
    config = json.loads(re.search(r"application/json\">(.*?)</script>", html).group(1))
    assert config["throttle"] == 100 and config["url"] == "/ws/</script>"


def test_unknown_arguments_are_an_error():
    with pytest.raises(TemplateSyntaxError, match=r"unknown arguments \['throtle'\]"):
        render("{% pushgateway_script throtle=1 %}")


# {% pushgateway_fragment %}: the attributes of an element that follows a channel


def fragment(request, source, **context):
    template = Template("{% load pushgateway %}<div " + source + ">")
    html = template.render(Context({"request": request, **context}))
    assert html.startswith("<div ") and html.endswith(">")
    return html


def attributes(html):
    """The attributes of the one element in `html`, unescaped as a browser reads them."""
    found = re.findall(r'([\w-]+)="([^"]*)"', html)
    assert len(found) == html.count("=")  # every value quoted; no quote got out of one
    return {name: htmlmod.unescape(value) for name, value in found}


def test_fragment_renders_the_channel_and_the_position_watch_read(outbox):
    pushgateway.publish("comments-7")
    request = RequestFactory().get("/")
    positions = pushgateway.watch(request, "comments-7")
    pushgateway.publish("comments-7")  # after the read: the page must still be told of it
    html = fragment(request, "{% pushgateway_fragment channel %}", channel="comments-7")
    assert attributes(html) == {
        "data-pushgateway-channel": "comments-7",
        "data-pushgateway-since": json.dumps(
            positions["comments-7"].as_json(), separators=(",", ":")
        ),
    }
    assert json.loads(attributes(html)["data-pushgateway-since"])["seq"] == 1


def test_fragment_renders_a_token_only_for_a_private_channel(outbox):
    request = RequestFactory().get("/")
    pushgateway.watch(request, "events", "private-inbox-3")
    public = attributes(fragment(request, '{% pushgateway_fragment "events" %}'))
    private = attributes(fragment(request, '{% pushgateway_fragment "private-inbox-3" %}'))
    assert "data-pushgateway-token" not in public
    token = private["data-pushgateway-token"]
    assert token == request._pushgateway_page.tokens["private-inbox-3"]
    assert tokens.check_token("private-inbox-3", token)
    assert not tokens.check_token("private-inbox-4", token)


def test_fragment_escapes_what_it_renders(outbox, monkeypatch):
    """The position is JSON inside a double-quoted attribute: its quotes are escaped, and an
    epoch (from the store) holding markup cannot end the attribute or the tag."""
    request = RequestFactory().get("/")
    pushgateway.watch(request, "events")
    monkeypatch.setitem(request._pushgateway_page.positions, "events", Position('"><x', 4))
    html = fragment(request, '{% pushgateway_fragment "events" throttle=250 %}')
    assert "<x" not in html and '"><' not in html
    found = attributes(html)
    assert json.loads(found["data-pushgateway-since"]) == {"epoch": '"><x', "seq": 4}
    assert found["data-pushgateway-throttle"] == "250"


def test_fragment_without_a_position_renders_the_channel_only(outbox, monkeypatch):
    """A store that did not answer in time: the page resyncs once it subscribes."""
    request = RequestFactory().get("/")
    pushgateway.watch(request, "events")
    monkeypatch.setitem(request._pushgateway_page.positions, "events", None)
    html = fragment(request, '{% pushgateway_fragment "events" %}')
    assert attributes(html) == {"data-pushgateway-channel": "events"}


def test_fragment_of_a_channel_the_view_did_not_watch_is_an_error(outbox):
    request = RequestFactory().get("/")
    pushgateway.watch(request, "events")
    with pytest.raises(ImproperlyConfigured, match=r"watch\(request, 'comments-7'\)"):
        fragment(request, '{% pushgateway_fragment "comments-7" %}')
    with pytest.raises(ImproperlyConfigured):  # no request in the context at all
        Template('{% load pushgateway %}{% pushgateway_fragment "events" %}').render(Context())
    with pytest.raises(InvalidChannelName):
        fragment(request, '{% pushgateway_fragment "no spaces" %}')
    with pytest.raises(TemplateSyntaxError, match="milliseconds"):
        fragment(request, '{% pushgateway_fragment "events" throttle="soon" %}')
