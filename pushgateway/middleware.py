"""Which page made a request, so the hints it causes can skip that page.

The browser module sends its client id with the page's own requests (`PushGateway.fetch()`
adds the header X-PushGateway-Client; `{% pushgateway_client_field %}` in a form posts the
field pushgateway_client). This middleware makes it the current request's client: hints
published while it handles the request carry it, and that page does not refetch what it
just wrote. Add it to MIDDLEWARE anywhere before the views that save.
"""

from __future__ import annotations

import contextvars
import re

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from .constants import CLIENT_FIELD, CLIENT_HEADER, CLIENT_ID_PATTERN

CLIENT_ID = re.compile(CLIENT_ID_PATTERN)

current_client: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pushgateway_client", default=None
)


def client_of(request) -> str | None:
    client = request.headers.get(CLIENT_HEADER)
    if (
        client is None
        and request.method == "POST"
        and not request.content_type.startswith("application/json")
    ):
        client = request.POST.get(CLIENT_FIELD)
    return client if client and CLIENT_ID.fullmatch(client) else None


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
            return self.get_response(request)
        finally:
            current_client.reset(token)

    async def __acall__(self, request):
        token = current_client.set(client_of(request))
        try:
            return await self.get_response(request)
        finally:
            current_client.reset(token)
