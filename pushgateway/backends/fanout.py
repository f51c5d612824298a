"""Publish through Fanout: GRIP to Fastly Fanout or a self-run Pushpin, or the legacy realm API.

GRIP mode publishes `ws-message` items whose content is the wire protocol's `message`
frame, so a browser connected through the proxy sees exactly what the self-hosted layer
sends. Legacy realm mode publishes `json-object` items (the `fanout` package's format) for
the Faye/Bayeux clients that service requires. Either way delivery runs off the request
path in a BackgroundSender: bounded queue, a timeout on every attempt, retries with
backoff on connection errors and 500/502/503/504, counted drops.

Stream positions are kept by this backend, not by Fanout (which stores no state per
channel that a page could compare with): in Redis when OPTIONS["POSITIONS"] names one, which
every publishing and serving process must share; else in this process's memory, which
only sees this process's publishes. A position is advanced once per hint before the first
attempt, so a hint that is given up still moved its channel: pages that reconnect see it,
and the sender publishes a `resync` for the channel once Fanout answers again.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import time
import urllib.error
import urllib.request
from typing import Any

import jwt
from django.core.checks import Error

from ..message import Message
from ..positions import DEFAULT_TTL, MemoryPositions, RedisPositions
from ..sender import BackgroundSender, PermanentDeliveryError
from .base import BaseBackend, logger

RETRY_STATUSES = {500, 502, 503, 504}
DEFAULT_REALM_URL = "https://api.fanout.io/realm/"
FAYE_SCRIPT = "/static/faye-browser-1.1.2-fanout1-min.js"
# Published by Fanout for that file; a setting so it can follow a new release.
FAYE_INTEGRITY = "sha384-/9uLm3UDnP3tBHstjgZiqLa7fopVRjYmFinSBjz+FPS/ibb2C4aowhIttvYIGGt9"


@functools.lru_cache(maxsize=16)
def grip_config(grip_url: str) -> dict[str, Any]:
    """The parts of a GRIP_URL (django-grip's format), parsed by gripcontrol (and cached:
    the WebSocket-over-HTTP view verifies every request with it). Do not mutate."""
    from gripcontrol import parse_grip_uri

    return parse_grip_uri(grip_url)


def realm_key(key: str) -> bytes:
    return base64.b64decode(key, validate=True)


def ws_item(message, position) -> dict:
    from gripcontrol import WebSocketMessageFormat
    from pubcontrol import Item

    return {
        "channel": message.channel,
        **Item(WebSocketMessageFormat(message.frame(position))).export(formats_field=True),
    }


def json_object_item(message, position) -> dict:
    from fanout import JsonObjectFormat
    from pubcontrol import Item

    frame = json.loads(message.frame(position))
    return {"channel": message.channel, **Item(JsonObjectFormat(frame)).export(formats_field=True)}


class FanoutBackend(BaseBackend):
    options = (
        "GRIP_URL",
        "REALM",
        "REALM_KEY",
        "REALM_URL",
        "FAYE_URL",
        "FAYE_INTEGRITY",
        "TIMEOUT",
        "RETRIES",
        "BACKOFF_FACTOR",
        "QUEUE_SIZE",
        "POSITIONS",
        "POSITION_TTL",
    )

    def __init__(
        self,
        GRIP_URL=None,
        REALM=None,
        REALM_KEY=None,
        REALM_URL=DEFAULT_REALM_URL,
        FAYE_URL=None,
        FAYE_INTEGRITY=FAYE_INTEGRITY,
        TIMEOUT=5.0,
        RETRIES=3,
        BACKOFF_FACTOR=0.3,
        QUEUE_SIZE=10_000,
        POSITIONS=None,
        POSITION_TTL=DEFAULT_TTL,
        **rest,
    ):
        super().__init__(**rest)
        self.timeout = TIMEOUT
        if POSITIONS:
            self.positions = RedisPositions(
                [POSITIONS], prefix="pushgateway", ttl=POSITION_TTL, timeout=TIMEOUT
            )
        else:
            self.positions = MemoryPositions(POSITION_TTL)
        if GRIP_URL:
            grip = grip_config(GRIP_URL)
            self.mode = "grip"
            self.endpoint = grip["control_uri"] + "/publish/"
            self.iss, self.key = grip.get("control_iss"), grip.get("key")
            self.make_item = ws_item
        else:
            self.mode = "realm"
            self.endpoint = f"{REALM_URL.rstrip('/')}/{REALM}/publish/"
            self.iss, self.key = REALM, realm_key(REALM_KEY)
            self.make_item = json_object_item
            self.faye_url = FAYE_URL or f"https://{REALM}.fanoutcdn.com/bayeux"
            self.faye_integrity = FAYE_INTEGRITY
        self.sender = BackgroundSender(
            self.post,
            name="fanout",
            prepare=self.prepare,
            repair=self.repair,
            max_queue=QUEUE_SIZE,
            retries=RETRIES,
            backoff_factor=BACKOFF_FACTOR,
        )
        self.stats = self.sender.stats

    def authorization(self) -> str | None:
        if self.iss:
            claims = {"iss": self.iss, "exp": int(time.time()) + 3600}
            return "Bearer " + jwt.encode(claims, self.key, algorithm="HS256")
        if self.key:
            key = self.key.decode() if isinstance(self.key, bytes) else self.key
            return "Bearer " + key
        return None

    def prepare(self, messages) -> bytes:
        """The publish request body for a batch, with each hint's new position."""
        channels = [m.channel for m in messages]
        try:
            positions = self.positions.advance(channels)
        except Exception as exc:  # publish anyway: pages resync on a hint without position
            logger.warning("pushgateway fanout: cannot advance positions (%s)", exc)
            positions = [None] * len(channels)
        items = [self.make_item(m, p) for m, p in zip(messages, positions, strict=True)]
        return json.dumps({"items": items}).encode()

    def repair(self, channels) -> None:
        """Publish a resync at the current position of each channel whose hint was lost."""
        positions = self.read_positions(channels)
        messages = [Message(channel, resync=True) for channel in channels]
        self.post(
            json.dumps(
                {"items": [self.make_item(m, positions[m.channel]) for m in messages]}
            ).encode()
        )

    def post(self, body: bytes) -> None:
        """One HTTP attempt for a batch; raises to retry, PermanentDeliveryError to give up."""
        request = urllib.request.Request(self.endpoint, data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        auth = self.authorization()
        if auth:
            request.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace")
            if exc.code in RETRY_STATUSES:
                raise ConnectionError(f"HTTP {exc.code} from {self.endpoint}: {detail}") from exc
            raise PermanentDeliveryError(f"HTTP {exc.code} from {self.endpoint}: {detail}") from exc

    def send_messages(self, messages) -> None:
        self.sender.submit(messages)

    def flush(self, timeout=None) -> bool:
        return self.sender.flush(timeout)

    def close(self) -> None:
        self.sender.close()
        self.positions.close()

    def client_config(self) -> dict[str, Any]:
        if self.mode == "grip":
            return {"transport": "websocket"}
        return {
            "transport": "faye",
            "fayeUrl": self.faye_url,
            "fayeScript": self.faye_url + FAYE_SCRIPT,
            "fayeIntegrity": self.faye_integrity,
        }

    @classmethod
    def check(cls, options):
        errors = super().check(options)
        grip_url, realm, key = (options.get(k) for k in ("GRIP_URL", "REALM", "REALM_KEY"))
        if bool(grip_url) == bool(realm or key):
            return errors + [
                Error(
                    "FanoutBackend needs either OPTIONS['GRIP_URL'] (Fastly Fanout or Pushpin) "
                    "or OPTIONS['REALM'] and OPTIONS['REALM_KEY'] (legacy Fanout.io), not both.",
                    id="pushgateway.E006",
                )
            ]
        if grip_url:
            grip = grip_config(grip_url)
            if not grip["control_uri"].startswith(("http://", "https://")):
                errors.append(
                    Error(f"GRIP_URL {grip_url!r} is not an http(s) URL.", id="pushgateway.E007")
                )
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
        elif not (realm and key):
            errors.append(
                Error("Legacy realm mode needs both REALM and REALM_KEY.", id="pushgateway.E006")
            )
        else:
            try:
                realm_key(key)
            except (binascii.Error, ValueError):
                errors.append(Error("REALM_KEY is not valid base64.", id="pushgateway.E007"))
        return errors
