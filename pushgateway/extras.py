"""Optional parts: what each extra of the package brings, imported only when it is configured.

`pip install "django-pushgateway[redis,daphne]"` must give a project that starts: modules
of other extras (PyJWT, urllib3, gripcontrol, prometheus_client...) are imported where the
feature that needs them is built, and a feature configured without its extra is a system
check error (pushgateway.E010) and a clear ImproperlyConfigured, never a bare ImportError.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from types import ModuleType

from django.core.exceptions import ImproperlyConfigured


def install_hint(extra: str) -> str:
    return f'pip install "django-pushgateway[{extra}]"'


def missing(modules: Iterable[str]) -> list[str]:
    """Those of `modules` (top-level names) that cannot be imported here."""
    return [name for name in modules if not _importable(name)]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent that fails to import; a None in sys.modules
        return False


def require(extra: str, module: str, feature: str) -> ModuleType:
    """Import `module`, or raise ImproperlyConfigured saying which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = exc.name or module
        raise ImproperlyConfigured(
            f"{feature} needs {name}, which is not installed: {install_hint(extra)}"
        ) from exc
