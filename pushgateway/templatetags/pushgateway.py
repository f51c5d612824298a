"""{% pushgateway_script %}: the browser module and its configuration, without inline script;
{% pushgateway_fragment %}: the attributes of an element that follows a channel."""

import json

from django import template
from django.core.exceptions import ImproperlyConfigured
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join, json_script
from django.utils.safestring import SafeString

from ..backends import get_backend
from ..constants import CLIENT_DEFAULTS, CLIENT_FIELD, CONFIG_ELEMENT_ID, FRAGMENT_ATTRIBUTES
from ..message import validate_channel
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


@register.simple_tag(takes_context=True)
def pushgateway_fragment(context, channel: str, throttle: int | None = None) -> SafeString:
    """The attributes that make an element follow `channel`, for inside its start tag:
    ``<div {% pushgateway_fragment channel %} hx-get="..." hx-trigger="pushgateway:change">``.

    The browser module subscribes the element while it is in the document and dispatches
    ``pushgateway:change`` on it at each callback (docs/javascript.md). Renders the channel,
    the position the view read with pushgateway.watch() (a page knows what it missed since)
    and, for a `private-` channel, its token; `throttle` (milliseconds) overrides the page's.
    Raises ImproperlyConfigured when the view did not watch() the channel: call it before
    the view queries what the fragment shows.
    """
    validate_channel(channel)
    page = getattr(context.get("request"), ATTRIBUTE, None)
    if page is None or channel not in page.positions:
        raise ImproperlyConfigured(
            f"pushgateway_fragment: the view did not watch {channel!r}; call "
            f"pushgateway.watch(request, {channel!r}) before it queries what the fragment shows"
        )
    attributes = {FRAGMENT_ATTRIBUTES["channel"]: channel}
    position = page.positions[channel]
    if position is not None:  # None: the store did not answer; the page resyncs once
        since = json.dumps(position.as_json(), separators=(",", ":"))
        attributes[FRAGMENT_ATTRIBUTES["since"]] = since
    if channel in page.tokens:
        attributes[FRAGMENT_ATTRIBUTES["token"]] = page.tokens[channel]
    if throttle is not None:
        if type(throttle) is not int or throttle < 0:
            raise template.TemplateSyntaxError(
                f"pushgateway_fragment: throttle must be milliseconds, not {throttle!r}"
            )
        attributes[FRAGMENT_ATTRIBUTES["throttle"]] = throttle
    return format_html_join(" ", '{}="{}"', attributes.items())
