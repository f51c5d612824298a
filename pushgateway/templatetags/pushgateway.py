"""{% pushgateway_script %}: the browser module and its configuration, without inline script."""

from django import template
from django.templatetags.static import static
from django.utils.html import format_html, json_script

from ..backends import get_backend

register = template.Library()

DEFAULTS = {
    "url": "/ws/pushgateway/",
    "throttle": 500,
    "pollDown": 5000,
    "pollUp": 300000,
}


@register.simple_tag
def pushgateway_script(**overrides):
    """Render the config as JSON and the module's script tag.

    Keyword arguments override the defaults: url (path or ws(s):// URL of the socket),
    throttle, pollDown and pollUp (milliseconds).
    """
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise template.TemplateSyntaxError(
            f"pushgateway_script got unknown arguments {unknown}; valid: {sorted(DEFAULTS)}"
        )
    config = {**DEFAULTS, **get_backend().client_config(), **overrides}
    return format_html(
        '{}\n<script src="{}" defer></script>',
        json_script(config, "pushgateway-config"),
        static("pushgateway/pushgateway.js"),
    )
