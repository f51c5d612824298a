"""Fanout, as settings name it: FanoutBackend builds the Fanout backend its OPTIONS are for.

- OPTIONS["GRIP_URL"]: `pushgateway.backends.grip.GripBackend` (Fastly Fanout or Pushpin);
- OPTIONS["REALM"] and ["REALM_KEY"]: `pushgateway.backends.realm.RealmBackend` (the legacy
  Fanout.io realm API, for Faye/Bayeux clients).

Either can also be named in PUSHGATEWAY["BACKEND"] by its own dotted path; what they share
(the HTTP publishing, retries, stream positions) is in `httppublish`.
"""

from __future__ import annotations

from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured

from .base import BaseBackend
from .grip import GripBackend, grip_config
from .httppublish import HttpPublishBackend
from .realm import RealmBackend

__all__ = ["FanoutBackend", "GripBackend", "RealmBackend", "grip_config"]

NEEDS = (
    "FanoutBackend needs either OPTIONS['GRIP_URL'] (Fastly Fanout or Pushpin) or "
    "OPTIONS['REALM'] and OPTIONS['REALM_KEY'] (legacy Fanout.io), not both."
)


def backend_class(options: dict) -> type[HttpPublishBackend] | None:
    """The Fanout backend these OPTIONS are for; None if they name neither or both."""
    grip = bool(options.get("GRIP_URL"))
    realm = bool(options.get("REALM") or options.get("REALM_KEY"))
    if grip == realm:
        return None
    return GripBackend if grip else RealmBackend


class FanoutBackend(BaseBackend):
    """GripBackend or RealmBackend, whichever the options are for (an instance of that
    class is what `FanoutBackend(**OPTIONS)` returns)."""

    options = tuple(dict.fromkeys(GripBackend.options + RealmBackend.options))

    def __new__(cls, **options):
        chosen = backend_class(options)
        if chosen is None:
            raise ImproperlyConfigured(NEEDS)
        return chosen(**options)

    @classmethod
    def check(cls, options):
        chosen = backend_class(options)
        if chosen is None:
            return super().check(options) + [Error(NEEDS, id="pushgateway.E006")]
        return chosen.check(options)
