"""HTTP routes: the WebSocket-over-HTTP endpoint used behind Pushpin or Fastly Fanout.

Include it in your URLconf when you use the Fanout backend in GRIP mode:
``path("", include("channels_app.urls"))``.
"""

from django.urls import path

from .grip import websocket_over_http

urlpatterns = [
    path("ws/pushgateway/", websocket_over_http, name="pushgateway-websocket-over-http"),
]
