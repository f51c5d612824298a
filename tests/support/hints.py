"""What the locmem backend recorded, as tests compare it, and registrations for a test."""

from contextlib import contextmanager

import pushgateway
from pushgateway import registry


def sent(outbox):
    """(channel, data) of each hint in `outbox`, in the order they were sent."""
    return [(m.channel, m.data) for m in outbox]


@contextmanager
def registered_as(model, **options):
    """`model` registered with `options` (pushgateway.register's) inside the block, and
    with its own registration again after it (the demo's, from demo/models.py)."""
    own = registry._registry.pop(model, None)
    pushgateway.register(model, **options)
    try:
        yield model
    finally:
        registry._registry.pop(model, None)
        if own is not None:
            registry._registry[model] = own
