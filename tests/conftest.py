import pytest
from django.test import override_settings

import pushgateway

LOCMEM = {"BACKEND": "pushgateway.backends.locmem.LocMemBackend"}


@pytest.fixture
def outbox():
    """Publish into pushgateway.outbox (the locmem backend) for the duration of a test."""
    with override_settings(PUSHGATEWAY=LOCMEM):
        pushgateway.outbox.clear()
        yield pushgateway.outbox
        pushgateway.outbox.clear()
