"""What the locmem backend recorded, as tests compare it."""


def sent(outbox):
    """(channel, data) of each hint in `outbox`, in the order they were sent."""
    return [(m.channel, m.data) for m in outbox]
