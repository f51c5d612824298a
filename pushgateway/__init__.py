"""django-pushgateway: publish small hints after commit; pages subscribed to a channel re-fetch.

Public API: publish, apublish, register, unregister, watch, InvalidChannelName, HintTooLarge,
make_token, outbox.
"""

from .exceptions import AlreadyRegistered, HintTooLarge, InvalidChannelName, NotRegistered
from .message import Message
from .pages import watch
from .publishing import apublish, publish
from .registry import register, unregister
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
    "make_token",
    "outbox",
    "publish",
    "register",
    "unregister",
    "watch",
]
