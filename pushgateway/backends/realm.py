"""Publish through the legacy Fanout.io realm API, to Faye/Bayeux clients.

Each hint is a `json-object` item (the `fanout` package's format) whose value is the wire
protocol's `message` frame; the browser module subscribes with Fanout's Faye client, loaded
from FAYE_URL with Subresource Integrity (FAYE_INTEGRITY). Requests are signed with a JWT
(`iss` the realm, HS256 with the base64-decoded REALM_KEY).

Bayeux channel segments hold letters, digits and `-_!~()$@`, but not the `.` of channel
names such as "demo.comment.42": the realm channel replaces each `.` with `~` (which channel
names never hold, so the mapping is reversible), and Faye subscribes to "/" plus that:
"demo.comment.42" is published on "demo~comment~42" and subscribed to as "/demo~comment~42".
The browser module (`fayeSubscribe`) makes the same replacement.

The realm API has no private channels: Fanout's Bayeux endpoint lets anyone subscribe to any
channel by name, with no token. So a `private-` channel is refused, never published: by
system check error pushgateway.E011 (OPTIONS["PRIVATE"], or a model registered private), and
at publish() with PrivateChannelUnsupported (docs/security.md says why it is refused rather
than published under a secret name).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured

from ..constants import BAYEUX_DOT
from ..exceptions import PrivateChannelUnsupported
from ..protocol import is_private
from .httppublish import HttpPublishBackend

DEFAULT_REALM_URL = "https://api.fanout.io/realm/"
FAYE_SCRIPT = "/static/faye-browser-1.1.2-fanout1-min.js"
# Published by Fanout for that file; a setting so it can follow a new release.
FAYE_INTEGRITY = "sha384-/9uLm3UDnP3tBHstjgZiqLa7fopVRjYmFinSBjz+FPS/ibb2C4aowhIttvYIGGt9"


def realm_channel(channel: str) -> str:
    """The realm (Bayeux) channel a channel name is published on: "a.b" -> "a~b"."""
    return channel.replace(".", BAYEUX_DOT)


def channel_name(realm: str) -> str:
    """The channel name of a realm channel (or Bayeux channel): "/a~b" -> "a.b"."""
    return realm.removeprefix("/").replace(BAYEUX_DOT, ".")


NOT_PRIVATE = (
    "the legacy Fanout.io realm API cannot keep a channel private: anyone can subscribe to "
    "its Bayeux channels by name"
)
NOT_PRIVATE_HINT = (
    "Use GRIP_URL (Fastly Fanout or Pushpin) or the channels backend for private channels, "
    "or publish these hints on public channels."
)


def realm_key(key: str) -> bytes:
    return base64.b64decode(key, validate=True)


class RealmBackend(HttpPublishBackend):
    """The legacy Fanout.io realm API: OPTIONS["REALM"] and ["REALM_KEY"] (base64), where to
    find the API and the Faye client, and the options of every Fanout backend."""

    options = (
        "REALM",
        "REALM_KEY",
        "REALM_URL",
        "FAYE_URL",
        "FAYE_INTEGRITY",
        *HttpPublishBackend.options,
    )
    name = "realm"
    needs = (*HttpPublishBackend.needs, "fanout")

    def __init__(
        self,
        REALM=None,
        REALM_KEY=None,
        REALM_URL=DEFAULT_REALM_URL,
        FAYE_URL=None,
        FAYE_INTEGRITY=FAYE_INTEGRITY,
        **options,
    ):
        if not (REALM and REALM_KEY):
            raise ImproperlyConfigured("RealmBackend needs OPTIONS['REALM'] and ['REALM_KEY']")
        self.endpoint = f"{REALM_URL.rstrip('/')}/{REALM}/publish/"
        self.iss, self.key = REALM, realm_key(REALM_KEY)
        self.faye_url = FAYE_URL or f"https://{REALM}.fanoutcdn.com/bayeux"
        self.faye_integrity = FAYE_INTEGRITY
        super().__init__(**options)

    def item(self, message, position) -> dict:
        from fanout import JsonObjectFormat
        from pubcontrol import Item

        frame = JsonObjectFormat(json.loads(message.frame(position)))
        return {"channel": realm_channel(message.channel), **Item(frame).export(formats_field=True)}

    def validate_channels(self, channels: Iterable[str]) -> None:
        private = sorted(c for c in channels if is_private(c))
        if private:
            raise PrivateChannelUnsupported(f"{NOT_PRIVATE}; not published: {private[:5]}")

    def send_messages(self, messages) -> None:
        self.validate_channels(m.channel for m in messages)
        super().send_messages(messages)

    def client_config(self) -> dict[str, Any]:
        return {
            "transport": "faye",
            "fayeUrl": self.faye_url,
            "fayeScript": self.faye_url + FAYE_SCRIPT,
            "fayeIntegrity": self.faye_integrity,
        }

    @classmethod
    def check(cls, options):
        errors = super().check(options)
        realm, key = options.get("REALM"), options.get("REALM_KEY")
        if not (realm and key):
            errors.append(
                Error(
                    f"{cls.__name__} needs both OPTIONS['REALM'] and OPTIONS['REALM_KEY'].",
                    id="pushgateway.E006",
                )
            )
            return errors
        try:
            realm_key(key)
        except (binascii.Error, ValueError, TypeError):
            errors.append(Error("REALM_KEY is not valid base64.", id="pushgateway.E007"))
        return errors + cls.check_private(options)

    @classmethod
    def check_private(cls, options) -> list[Error]:
        """E011 for every way the project asks for private channels at startup."""
        from ..registry import private_models

        asking = ["OPTIONS['PRIVATE']"] if options.get("PRIVATE") else []
        asking += [f"{label} (registered private)" for label in private_models()]
        if not asking:
            return []
        return [
            Error(
                f"{', '.join(asking)} asks for private channels, but {NOT_PRIVATE}.",
                hint=NOT_PRIVATE_HINT,
                id="pushgateway.E011",
            )
        ]
