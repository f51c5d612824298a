"""Optional parts stay optional: a project installed without an extra imports, checks and
publishes; configuring a feature without its extra says which extra to install."""

import json
import subprocess
import sys
import textwrap

import pytest

from pushgateway import metrics
from pushgateway.checks import check_settings

LOCMEM = "pushgateway.backends.locmem.LocMemBackend"
# What the `fanout` and `metrics` extras bring (pyproject.toml).
EXTRAS_MODULES = ("jwt", "urllib3", "gripcontrol", "pubcontrol", "fanout", "prometheus_client")

# Run in a fresh interpreter in which the extras' packages cannot be imported, as in a
# project installed with `pip install "django-pushgateway[redis,daphne]"`.
WITHOUT_EXTRAS = """
import importlib, importlib.abc, json, pkgutil, sys

BLOCKED = set(sys.argv[1].split(","))

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocked())

import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "channels", "pushgateway"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    PUSHGATEWAY={"BACKEND": "pushgateway.backends.locmem.LocMemBackend"},
)
django.setup()
import pushgateway

failed = {}
for module in pkgutil.walk_packages(pushgateway.__path__, "pushgateway."):
    try:
        importlib.import_module(module.name)
    except ImportError as exc:
        failed[module.name] = str(exc)
"""


def without_extras(code: str) -> dict:
    """Run WITHOUT_EXTRAS then `code` (which prints one JSON line last); its answer."""
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + textwrap.dedent(code), ",".join(EXTRAS_MODULES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_every_module_imports_without_the_extras_but_the_http_client_that_is_theirs():
    found = without_extras("""
        import pushgateway.backends.fanout, pushgateway.backends.grip, pushgateway.backends.realm
        from pushgateway.backends.fanout import grip_config
        print(json.dumps(failed))
    """)
    # httpclient.py is the Fanout backends' urllib3 and PyJWT: imported when one is built.
    assert list(found) == ["pushgateway.backends.httpclient"]


def test_a_fanout_backend_built_without_the_extra_says_which_to_install():
    found = without_extras("""
        from django.core.exceptions import ImproperlyConfigured
        from pushgateway.backends.fanout import FanoutBackend

        errors = []
        for options in ({"GRIP_URL": "http://127.0.0.1:5561?key=k"},
                        {"REALM": "r", "REALM_KEY": "a2V5"}):
            try:
                FanoutBackend(**options)
            except ImproperlyConfigured as exc:
                errors.append(str(exc))
        print(json.dumps(errors))
    """)
    assert len(found) == 2
    assert all('pip install "django-pushgateway[fanout]"' in error for error in found)


def test_a_fanout_configuration_without_the_extra_is_a_system_check_error():
    found = without_extras("""
        from django.test import override_settings
        from pushgateway.checks import check_settings

        messages = {}
        for options in ({"GRIP_URL": "http://127.0.0.1:5561?key=k"},
                        {"REALM": "r", "REALM_KEY": "a2V5"}):
            backend = {"BACKEND": "pushgateway.backends.fanout.FanoutBackend", "OPTIONS": options}
            with override_settings(PUSHGATEWAY=backend):
                for m in check_settings():
                    messages.setdefault(m.id, []).append(m.hint)
        print(json.dumps(messages))
    """)
    assert list(found) == ["pushgateway.E010"] and len(found["pushgateway.E010"]) == 2
    assert all("django-pushgateway[fanout]" in hint for hint in found["pushgateway.E010"])


@pytest.fixture
def without_prometheus(monkeypatch, settings):
    """OPTIONS["METRICS"] on, in a process where prometheus_client cannot be imported."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setattr(metrics, "_metrics", None)
    monkeypatch.setattr(metrics, "_unavailable", False)
    settings.PUSHGATEWAY = {"BACKEND": LOCMEM, "OPTIONS": {"METRICS": True}}


def test_metrics_on_without_prometheus_client_is_a_system_check_error(without_prometheus):
    [error] = check_settings()
    assert error.id == "pushgateway.E010" and error.is_serious()
    assert "prometheus_client" in error.msg
    assert error.hint == 'pip install "django-pushgateway[metrics]"'


def test_metrics_on_without_prometheus_client_does_not_break_publishing(without_prometheus, caplog):
    import pushgateway

    pushgateway.outbox.clear()
    pushgateway.publish("comments-7", {"pk": "1"})  # outside a transaction: at once
    assert [(m.channel, m.data) for m in pushgateway.outbox] == [("comments-7", {"pk": "1"})]
    assert metrics.get() is None
    assert "django-pushgateway[metrics]" in caplog.text  # said once, in the log
    pushgateway.outbox.clear()
