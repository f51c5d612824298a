import json
import re

import pytest
from django.template import Context, Template, TemplateSyntaxError

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
