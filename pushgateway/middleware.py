"""Which page made a request, so the hints it causes can skip that page; and no shared cache
for pages that carry tokens.

The browser module sends its client id with the page's own requests (`PushGateway.fetch()`
adds the header X-PushGateway-Client; `{% pushgateway_client_field %}` in a form posts the
field pushgateway_client). This middleware makes the id's tag (client_tag) the current
request's client: hints published while it handles the request carry the tag, which only the
page that knows the id recognises, so that page does not refetch what it just wrote. The id
itself never leaves the request. Add it to MIDDLEWARE anywhere before the views that save.

A response whose page pushgateway.watch() gave tokens gets `Cache-Control: private`: a shared
cache (a CDN, a proxy) must not hand one user's tokens to another.
"""

from __future__ import annotations

import contextvars
import hashlib
import re

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.utils.cache import patch_cache_control

from .constants import CLIENT_FIELD, CLIENT_HEADER, CLIENT_ID_PATTERN, CLIENT_TAG_LENGTH
from .pages import ATTRIBUTE

CLIENT_ID = re.compile(CLIENT_ID_PATTERN)

current_client: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pushgateway_client", default=None
)


def client_tag(client_id: str) -> str:
    """What hints carry for the page whose client id is `client_id`: the start of its SHA-256
    as hex. The browser module computes the same from its own id (docs/security.md)."""
    return hashlib.sha256(client_id.encode()).hexdigest()[:CLIENT_TAG_LENGTH]


def client_of(request) -> str | None:
    """The tag of the client id the request says it comes from, or None."""
    client = request.headers.get(CLIENT_HEADER)
    if (
        client is None
        and request.method == "POST"
        and not request.content_type.startswith("application/json")
    ):
        client = request.POST.get(CLIENT_FIELD)
    return client_tag(client) if client and CLIENT_ID.fullmatch(client) else None


def private_page(request, response):
    """`response`, marked `Cache-Control: private` when its page holds tokens."""
    page = getattr(request, ATTRIBUTE, None)
    if page is not None and page.tokens:
        patch_cache_control(response, private=True)
    return response


class ClientIdMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        token = current_client.set(client_of(request))
        try:
            return private_page(request, self.get_response(request))
        finally:
            current_client.reset(token)

    async def __acall__(self, request):
        token = current_client.set(client_of(request))
        try:
            return private_page(request, await self.get_response(request))
        finally:
            current_client.reset(token)
