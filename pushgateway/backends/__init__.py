"""Backends deliver published hints; the one in use is chosen by PUSHGATEWAY["BACKEND"]."""

from __future__ import annotations

import threading

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from .base import BaseBackend

DEFAULT_BACKEND = "pushgateway.backends.channels.ChannelsBackend"

_backend: BaseBackend | None = None
_lock = threading.Lock()


def get_config() -> dict:
    config = getattr(settings, "PUSHGATEWAY", None) or {}
    return {
        "BACKEND": config.get("BACKEND", DEFAULT_BACKEND),
        "OPTIONS": config.get("OPTIONS", {}),
    }


def load_backend_class(path: str) -> type[BaseBackend]:
    return import_string(path)


def get_backend() -> BaseBackend:
    """The process-wide backend instance, built from settings on first use."""
    global _backend
    if _backend is None:
        with _lock:
            if _backend is None:
                config = get_config()
                _backend = load_backend_class(config["BACKEND"])(**config["OPTIONS"])
    return _backend


@receiver(setting_changed)
def _reset_backend(setting, **kwargs):
    global _backend
    if setting in ("PUSHGATEWAY", "CHANNEL_LAYERS"):
        with _lock:
            old, _backend = _backend, None
        if old is not None:
            old.close()
