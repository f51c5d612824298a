"""Publish through GRIP to Fastly Fanout or a self-run Pushpin.

Each hint is an item whose content is the wire protocol's `message` frame, as a `ws-message`
for sockets and as an `http-stream` Server-Sent Event for streams, so a browser connected
through the proxy sees exactly what the self-hosted layer sends. GRIP_URL
is django-grip's format: `key=` signs (with `iss=`, as a JWT) or authorises (without, as a
bearer token) the publish requests; `key=`/`verify-key=` with `verify-iss=` verify the
`Grip-Sig` of requests that come through the proxy (channels_app's WebSocket-over-HTTP view).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured

from .. import extras
from ..protocol import sse_event
from .httppublish import EXTRA, HttpPublishBackend


@functools.lru_cache(maxsize=16)
def grip_config(grip_url: str) -> dict[str, Any]:
    """The parts of a GRIP_URL (django-grip's format), parsed by gripcontrol (and cached:
    the WebSocket-over-HTTP view verifies every request with it). Do not mutate.

    Raises ImproperlyConfigured naming the `fanout` extra when gripcontrol is missing."""
    gripcontrol = extras.require(EXTRA, "gripcontrol", "GRIP_URL")
    return gripcontrol.parse_grip_uri(grip_url)


def in_clear_off_host(url: str) -> bool:
    """Whether requests to `url` cross a network in clear text: http:// to a host other
    than this one (localhost or a loopback address)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: it may resolve anywhere


class GripBackend(HttpPublishBackend):
    """Fastly Fanout or Pushpin: OPTIONS["GRIP_URL"], and the options of every Fanout
    backend (see HttpPublishBackend)."""

    options = ("GRIP_URL", *HttpPublishBackend.options)
    name = "grip"
    needs = (*HttpPublishBackend.needs, "gripcontrol")

    def __init__(self, GRIP_URL=None, **options):
        if not GRIP_URL:
            raise ImproperlyConfigured("GripBackend needs OPTIONS['GRIP_URL']")
        grip = grip_config(GRIP_URL)
        self.endpoint = grip["control_uri"] + "/publish/"
        self.iss, self.key = grip.get("control_iss"), grip.get("key")
        super().__init__(**options)

    def item(self, message, position) -> dict:
        from gripcontrol import HttpStreamFormat, WebSocketMessageFormat
        from pubcontrol import Item

        # One frame, two formats: sockets get it as a ws-message, streams held with
        # Grip-Hold: stream (channels_app.gripstream) as a Server-Sent Event.
        frame = message.frame(position)
        formats = [WebSocketMessageFormat(frame), HttpStreamFormat(sse_event(frame))]
        return {"channel": message.channel, **Item(formats).export(formats_field=True)}

    @classmethod
    def check(cls, options):
        errors = super().check(options)
        grip_url = options.get("GRIP_URL")
        if not grip_url:
            return errors + [
                Error(
                    f"{cls.__name__} needs OPTIONS['GRIP_URL'] (Fastly Fanout or Pushpin).",
                    hint="For Pushpin: http://127.0.0.1:5561?key=<sig_key>&verify-iss=pushpin",
                    id="pushgateway.E006",
                )
            ]
        if extras.missing(["gripcontrol"]):
            return errors  # reported by HttpPublishBackend.check
        grip = grip_config(grip_url)
        if not grip["control_uri"].startswith(("http://", "https://")):
            errors.append(
                Error(f"GRIP_URL {grip_url!r} is not an http(s) URL.", id="pushgateway.E007")
            )
        errors += cls.check_bearer(grip)
        if not (grip.get("verify_key") or grip.get("key")):
            errors.append(
                Error(
                    "GRIP_URL has no key= or verify-key=, so requests claiming to come "
                    "through the proxy (Grip-Sig) cannot be verified and all are refused.",
                    hint="For Pushpin: GRIP_URL=http://127.0.0.1:5561?key=<sig_key>"
                    "&verify-iss=pushpin",
                    id="pushgateway.E008",
                )
            )
        return errors

    @classmethod
    def check_bearer(cls, grip: dict[str, Any]) -> list[Warning]:
        """W006: without `iss=`, `key=` goes out as a bearer token on every publish; over
        plain HTTP to another host anyone on the way reads it (and, as Pushpin's sig_key,
        can sign a Grip-Sig with it)."""
        if not grip.get("key") or grip.get("control_iss"):
            return []
        if not in_clear_off_host(grip["control_uri"]):
            return []
        return [
            Warning(
                f"GRIP_URL sends its key= as a bearer token in clear text to "
                f"{grip['control_uri']!r} on every publish: whoever reads it can publish, and "
                "with Pushpin (where it is also the sig_key) sign requests as the proxy.",
                hint="Add iss= (e.g. iss=pushpin: publish requests then carry a JWT signed with "
                "the key instead of the key), or use https://, or publish to Pushpin on loopback.",
                id="pushgateway.W006",
            )
        ]
