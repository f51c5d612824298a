"""settings.dev with PUSHGATEWAY OPTIONS from $PUSHGATEWAY_TEST_OPTIONS (JSON): how tests and
benchmarks give a server process options such as a short DRAIN_SECONDS.

    start_daphne(**options_env({"DRAIN_SECONDS": 2}))
"""

import json
import os

from settings.dev import *  # noqa: F403
from settings.dev import PUSHGATEWAY

PUSHGATEWAY["OPTIONS"].update(json.loads(os.environ.get("PUSHGATEWAY_TEST_OPTIONS", "{}")))


def options_env(options: dict) -> dict[str, str]:
    """The environment of a server process of this project with these OPTIONS."""
    return {
        "DJANGO_SETTINGS_MODULE": "tests.support.options_settings",
        "PUSHGATEWAY_TEST_OPTIONS": json.dumps(options),
    }
