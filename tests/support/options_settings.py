"""settings.dev with PUSHGATEWAY OPTIONS from $PUSHGATEWAY_TEST_OPTIONS (JSON): how tests and
benchmarks give a server process options such as a short DRAIN_SECONDS.

    start_daphne(**options_env({"DRAIN_SECONDS": 2}))

$PUSHGATEWAY_TEST_BASE_SETTINGS names another settings module to start from (e.g.
settings.production, for the tests on hosts of their own).
"""

import importlib
import json
import os

_base = importlib.import_module(os.environ.get("PUSHGATEWAY_TEST_BASE_SETTINGS", "settings.dev"))
globals().update({name: value for name, value in vars(_base).items() if name.isupper()})

PUSHGATEWAY["OPTIONS"].update(json.loads(os.environ.get("PUSHGATEWAY_TEST_OPTIONS", "{}")))  # noqa: F821

#: The per-address join budget of a load generator: thousands of pages from one address (a
#: benchmark, a churn test) would otherwise measure the budget (docs/security.md).
ONE_HOST_OF_PAGES = {"ADDRESS_JOIN_BURST": 1_000_000, "ADDRESS_JOIN_RATE": 1_000_000}


def options_env(options: dict, base: str = "settings.dev") -> dict[str, str]:
    """The environment of a server process of this project with these OPTIONS, on the
    settings module `base`."""
    return {
        "DJANGO_SETTINGS_MODULE": "tests.support.options_settings",
        "PUSHGATEWAY_TEST_OPTIONS": json.dumps(options),
        "PUSHGATEWAY_TEST_BASE_SETTINGS": base,
    }
