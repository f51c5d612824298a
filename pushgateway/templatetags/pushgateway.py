"""{% pushgateway_script %}: the browser module and its configuration, without inline script."""

from django import template
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, json_script

from ..backends import get_backend
from ..constants import CLIENT_DEFAULTS, CLIENT_FIELD, CONFIG_ELEMENT_ID
from ..pages import ATTRIBUTE

register = template.Library()


def positions_url() -> str | None:
    try:
        return reverse("pushgateway-positions")
    except NoReverseMatch:  # channels_app.urls not included: pages poll blindly
        return None


@register.simple_tag(takes_context=True)
def pushgateway_script(context, **overrides):
    """Render the config as JSON and the module's script tag.

    Keyword arguments override the defaults (pushgateway.constants.CLIENT_DEFAULTS): url
    (path or ws(s):// URL of the socket), positionsUrl, throttle, pollDown and pollUp
    (milliseconds). The positions and tokens the view read
    with pushgateway.watch() are rendered too.
    """
    unknown = sorted(set(overrides) - set(CLIENT_DEFAULTS))
    if unknown:
        raise template.TemplateSyntaxError(
            f"pushgateway_script got unknown arguments {unknown}; valid: {sorted(CLIENT_DEFAULTS)}"
        )
    backend = get_backend()
    config = {**CLIENT_DEFAULTS, "positionsUrl": positions_url(), **backend.client_config()}
    config.update(overrides)
    if backend.positions is not None:
        config["positionTtl"] = int(backend.positions.ttl * 1000)
    page = getattr(context.get("request"), ATTRIBUTE, None)
    if page is not None:
        config.update(page.client_config())
    return format_html(
        '{}\n<script src="{}" defer></script>',
        json_script(config, CONFIG_ELEMENT_ID),
        static("pushgateway/pushgateway.js"),
    )


@register.simple_tag
def pushgateway_client_field():
    """A hidden input for a form: the browser module fills in the page's client id on
    submit, so the hints the form's save causes skip this page (ClientIdMiddleware)."""
    return format_html('<input type="hidden" name="{}" value="">', CLIENT_FIELD)
