"""URL routing for the WebSocket layer; compose it into your own asgi.py."""

from django.urls import path

from pushgateway.constants import STREAM_PATH, WEBSOCKET_PATH  # noqa: F401 (asgi.py)

from .consumer import PushGatewayConsumer
from .stream import StreamConsumer

pushgateway_socket = PushGatewayConsumer.as_asgi()


def pushgateway_stream(django_app):
    """The ASGI application of STREAM_PATH (HTTP): streams served by this process's hub, or,
    where the backend publishes through a GRIP proxy, `django_app` (whose URLconf includes
    channels_app.urls) answers the proxy."""
    return StreamConsumer.as_asgi(fallback=django_app)


websocket_urlpatterns = [
    path(WEBSOCKET_PATH.lstrip("/"), pushgateway_socket),
]
