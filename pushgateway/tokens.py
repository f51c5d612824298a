"""Signed tokens that let a page subscribe to a `private-` channel."""

from django.core import signing

SALT = "pushgateway.private-channel"


def make_token(channel: str) -> str:
    """A token for subscribing to the private `channel`; give it only to pages allowed to."""
    return signing.TimestampSigner(salt=SALT).sign(channel)


def check_token(channel: str, token: str, max_age: float | None = None) -> bool:
    try:
        return signing.TimestampSigner(salt=SALT).unsign(token, max_age=max_age) == channel
    except (signing.BadSignature, UnicodeError):  # e.g. a lone surrogate sent in JSON
        return False
