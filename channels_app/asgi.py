"""ASGI application: Django over HTTP, the pushgateway WebSocket and stream on one port.

Serve with ``daphne channels_app.asgi:application`` (set DJANGO_SETTINGS_MODULE). With
DEBUG on, static files are served too, as ``runserver`` does. Your own project can compose
``channels_app.routing.websocket_urlpatterns`` with Channels' routers instead: see
docs/deployment.md.
"""

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.security.websocket import WebsocketDenier  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from . import tuning  # noqa: E402
from .routing import (  # noqa: E402
    STREAM_PATH,
    WEBSOCKET_PATH,
    pushgateway_socket,
    pushgateway_stream,
)

tuning.apply()

http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app
stream_app = pushgateway_stream(django_asgi_app)


# Marked as a coroutine function so that servers which inspect the application (uvicorn,
# hypercorn on Python 3.12+, daphne through asgiref's guarantee_single_callable) take it for
# ASGI 3 as it is; calling it returns the chosen coroutine.
@markcoroutinefunction
def application(scope, receive, send):
    """Route by scope, returning the chosen application's coroutine.

    Unlike Channels' routers this keeps no coroutine of its own alive while a socket is
    open; with thousands of idle sockets that is memory worth having.
    """
    if scope["type"] != "websocket":
        if scope["type"] == "http" and scope["path"] == STREAM_PATH:
            tuning.socket_opened()  # a stream is a connection of the hub like a socket
            return stream_app(scope, receive, send)
        return http_app(scope, receive, send)
    if scope["path"] == WEBSOCKET_PATH:
        tuning.socket_opened()
        return pushgateway_socket(scope, receive, send)
    return WebsocketDenier()(scope, receive, send)
