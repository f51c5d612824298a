from django.core.exceptions import ImproperlyConfigured


class InvalidChannelName(ValueError):
    """A channel name that is not 1-100 characters of [A-Za-z0-9._-]."""


class HintTooLarge(ValueError):
    """A hint whose data, serialised as JSON, is over the backend's MAX_DATA_BYTES."""


class PrivateChannelUnsupported(ImproperlyConfigured):
    """A private channel published through a backend that cannot keep it private (the
    legacy Fanout.io realm API, whose Bayeux channels anyone can subscribe to by name)."""


class AlreadyRegistered(ImproperlyConfigured):
    """The model is registered with pushgateway already."""


class NotRegistered(ImproperlyConfigured):
    """The model is not registered with pushgateway."""
