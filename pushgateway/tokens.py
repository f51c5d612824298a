"""Signed tokens that let a page subscribe to a `private-` channel.

A token is a Django-signed (TimestampSigner) claim: "this page may watch this one channel",
made when the view rendered the page. It proves the server once decided so, nothing more;
hints carry no data, so a leaked token reveals only when that channel changes, for as long
as the token is valid: OPTIONS["TOKEN_MAX_AGE"] seconds (DEFAULT_TOKEN_MAX_AGE, an hour; None:
never expire). A live subscription whose token expires (or whose key was dropped) is ended
with `forbidden` within the hub's verify interval on a socket or a stream, or at the
connection's next request behind Pushpin/Fanout (at least every 20 s; a stream that
Pushpin/Fanout holds keeps its channels until the page opens its next stream, see
docs/protocol.md); the browser module then asks the page's
`getToken` hook for a fresh one, by default by fetching the page again. They are signed with
SECRET_KEY and accepted with any key in SECRET_KEY_FALLBACKS (Django's way of rotating
keys): dropping a key from the fallbacks revokes every token made with it.
"""

from __future__ import annotations

from django.core import signing

from .backends import get_config

SALT = "pushgateway.private-channel"

#: Seconds a token is accepted after it was made, unless OPTIONS["TOKEN_MAX_AGE"] says
#: otherwise: a leaked token (a log, a shared screen, a cache) is dead within the hour, and
#: an open page renews its tokens about once an hour, by fetching itself again.
DEFAULT_TOKEN_MAX_AGE = 3600


def make_token(channel: str) -> str:
    """A token for subscribing to the private `channel`; give it only to pages allowed to."""
    return signing.TimestampSigner(salt=SALT).sign(channel)


def token_max_age() -> float | None:
    """OPTIONS["TOKEN_MAX_AGE"]: seconds, or None (tokens never expire)."""
    return get_config()["OPTIONS"].get("TOKEN_MAX_AGE", DEFAULT_TOKEN_MAX_AGE)


def check_token(channel: str, token: str, max_age: float | None = None) -> bool:
    """Whether `token` lets a page subscribe to `channel` now: made for it, with SECRET_KEY
    or a key in SECRET_KEY_FALLBACKS, at most `max_age` seconds ago (by default
    OPTIONS["TOKEN_MAX_AGE"])."""
    if max_age is None:
        max_age = token_max_age()
    try:
        return signing.TimestampSigner(salt=SALT).unsign(token, max_age=max_age) == channel
    except (signing.BadSignature, UnicodeError):  # e.g. a lone surrogate sent in JSON
        return False
