"""settings.dev with PUSHGATEWAY OPTIONS from $PUSHGATEWAY_TEST_OPTIONS (JSON): how tests and
benchmarks give a server process options such as a short DRAIN_SECONDS
(tests.support.servers.options_env). $PUSHGATEWAY_TEST_BASE_SETTINGS names another settings
module to start from (e.g. settings.production, for the tests on hosts of their own).
"""

import importlib
import json
import os

_base = importlib.import_module(os.environ.get("PUSHGATEWAY_TEST_BASE_SETTINGS", "settings.dev"))
globals().update({name: value for name, value in vars(_base).items() if name.isupper()})

PUSHGATEWAY["OPTIONS"].update(json.loads(os.environ.get("PUSHGATEWAY_TEST_OPTIONS", "{}")))  # noqa: F821
