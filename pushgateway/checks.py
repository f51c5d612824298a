"""System checks: a misconfigured PUSHGATEWAY setting is reported at startup."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from . import metrics
from .backends import DEFAULT_BACKEND, load_backend_class
from .backends.base import BaseBackend
from .constants import WEBSOCKET_PATH

KEYS = {"BACKEND", "OPTIONS"}


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs):
    configured = _configured()
    if isinstance(configured, list):
        return configured
    backend, options = configured
    return backend.check(options) + check_server(backend) + metrics.check()


@register(Tags.compatibility, deploy=True)
def check_deployment(app_configs=None, **kwargs):
    configured = _configured()
    if isinstance(configured, list):
        return []  # check_settings reports it
    backend, options = configured
    return backend.check_deployment(options) + check_public_models()


def check_public_models() -> list:
    """Models whose activity is public because nobody said otherwise (docs/security.md)."""
    from .registry import public_by_default  # imports models' registrations: not at startup

    models = sorted(model._meta.label for model in public_by_default())
    if not models:
        return []
    return [
        Warning(
            f"{', '.join(models)} publish hints on public channels: anyone can subscribe and "
            "see when each object is created, changed or deleted.",
            hint="Set PUSHGATEWAY OPTIONS['PRIVATE'] = True (pages then need tokens, which "
            "pushgateway.watch() renders), or say register(..., private=False) for models "
            "whose activity may be public.",
            id="pushgateway.W005",
        )
    ]


def check_server(backend) -> list:
    """A page cannot open its socket under `manage.py runserver` without daphne's."""
    if not getattr(backend, "serves_websockets", False) or not settings.DEBUG:
        return []
    if "daphne" in settings.INSTALLED_APPS:
        return []
    return [
        Warning(
            "'daphne' is not in INSTALLED_APPS, so manage.py runserver serves WSGI: pages "
            f"cannot open {WEBSOCKET_PATH} and fall back to polling.",
            hint="Put 'daphne' first in INSTALLED_APPS and set ASGI_APPLICATION = "
            "'channels_app.asgi.application' (or your own asgi.py), or serve with an ASGI "
            "server: daphne or uvicorn.",
            id="pushgateway.W004",
        )
    ]


def _configured():
    """(backend class, OPTIONS), or the errors that make them unusable."""
    config = getattr(settings, "PUSHGATEWAY", {})
    if not isinstance(config, dict):
        return [Error("PUSHGATEWAY must be a dict.", id="pushgateway.E001")]
    unknown = sorted(set(config) - KEYS)
    if unknown:
        return [
            Error(
                f"PUSHGATEWAY has unknown keys {unknown}.",
                hint=f"Valid keys: {sorted(KEYS)}.",
                id="pushgateway.E001",
            )
        ]
    path = config.get("BACKEND", DEFAULT_BACKEND)
    try:
        backend = load_backend_class(path)
    except ImportError as exc:
        return [
            Error(
                f"PUSHGATEWAY['BACKEND'] {path!r} cannot be imported: {exc}",
                hint="Use a dotted path such as 'pushgateway.backends.channels.ChannelsBackend'.",
                id="pushgateway.E002",
            )
        ]
    if not (isinstance(backend, type) and issubclass(backend, BaseBackend)):
        return [
            Error(
                f"PUSHGATEWAY['BACKEND'] {path!r} is not a pushgateway backend class.",
                hint="A backend subclasses pushgateway.backends.base.BaseBackend.",
                id="pushgateway.E003",
            )
        ]
    options = config.get("OPTIONS", {})
    if not isinstance(options, dict):
        return [Error("PUSHGATEWAY['OPTIONS'] must be a dict.", id="pushgateway.E004")]
    return backend, options
