"""Signed tokens that let a page subscribe to a `private-` channel.

A token is a Django-signed (TimestampSigner) claim: "this page may watch this one channel",
made when the view rendered the page. It proves the server once decided so, nothing more;
hints carry no data, so a leaked token reveals only when that channel changes, for as long
as the token is valid. With OPTIONS["TOKEN_MAX_AGE"] (seconds) tokens expire; the browser
module then asks the page's `getToken` hook for a fresh one. They are signed with
SECRET_KEY and accepted with any key in SECRET_KEY_FALLBACKS (Django's way of rotating
keys): dropping a key from the fallbacks revokes every token made with it.
"""

from __future__ import annotations

from django.core import signing

from .backends import get_config

SALT = "pushgateway.private-channel"


def make_token(channel: str) -> str:
    """A token for subscribing to the private `channel`; give it only to pages allowed to."""
    return signing.TimestampSigner(salt=SALT).sign(channel)


def token_max_age() -> float | None:
    return get_config()["OPTIONS"].get("TOKEN_MAX_AGE")


def check_token(channel: str, token: str, max_age: float | None = None) -> bool:
    """Whether `token` lets a page subscribe to `channel` now (and is not older than
    `max_age` seconds, by default OPTIONS["TOKEN_MAX_AGE"])."""
    if max_age is None:
        max_age = token_max_age()
    try:
        return signing.TimestampSigner(salt=SALT).unsign(token, max_age=max_age) == channel
    except (signing.BadSignature, UnicodeError):  # e.g. a lone surrogate sent in JSON
        return False
