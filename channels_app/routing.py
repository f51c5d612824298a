"""URL routing for the WebSocket layer; compose it into your own asgi.py."""

from django.urls import path

from pushgateway.constants import WEBSOCKET_PATH

from .consumer import PushGatewayConsumer

pushgateway_socket = PushGatewayConsumer.as_asgi()

websocket_urlpatterns = [
    path(WEBSOCKET_PATH.lstrip("/"), pushgateway_socket),
]
