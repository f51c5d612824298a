"""django-pushgateway: publish small hints after commit; pages subscribed to a channel re-fetch.

Public API: publish, apublish, publish_for, register, unregister, channel_for, watch,
make_token, outbox, Message, InvalidChannelName, HintTooLarge, AlreadyRegistered,
NotRegistered.
"""

from .exceptions import AlreadyRegistered, HintTooLarge, InvalidChannelName, NotRegistered
from .message import Message
from .pages import watch
from .publishing import apublish, publish
from .registry import channel_for, publish_for, register, unregister
from .tokens import make_token

#: Messages recorded by pushgateway.backends.locmem.LocMemBackend (tests read and clear it).
outbox: list[Message] = []

__all__ = [
    "AlreadyRegistered",
    "HintTooLarge",
    "InvalidChannelName",
    "Message",
    "NotRegistered",
    "apublish",
    "channel_for",
    "make_token",
    "outbox",
    "publish",
    "publish_for",
    "register",
    "unregister",
    "watch",
]
