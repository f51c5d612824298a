"""settings.dev with PUSHGATEWAY OPTIONS from $PUSHGATEWAY_TEST_OPTIONS (JSON): how tests and
benchmarks give a server process options such as a short DRAIN_SECONDS
(tests.support.servers.options_env).
"""

import json
import os

from settings.dev import *  # noqa: F403
from settings.dev import PUSHGATEWAY

PUSHGATEWAY["OPTIONS"].update(json.loads(os.environ.get("PUSHGATEWAY_TEST_OPTIONS", "{}")))
