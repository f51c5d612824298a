"""URL routing for the WebSocket layer; compose it into your own asgi.py."""

from django.urls import path

from .consumer import PushGatewayConsumer

websocket_urlpatterns = [
    path("ws/pushgateway/", PushGatewayConsumer.as_asgi()),
]
