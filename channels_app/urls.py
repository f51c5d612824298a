"""HTTP routes of the push gateway; include them in your URLconf:
``path("", include("channels_app.urls"))``.

- ``pushgateway/positions/``: the positions view, which pages poll while they have no socket;
- ``ws/pushgateway/``: the WebSocket-over-HTTP endpoint used behind Pushpin or Fastly Fanout.
"""

from django.urls import path

from pushgateway.constants import POSITIONS_PATH, WEBSOCKET_PATH

from .grip import websocket_over_http
from .views import positions

urlpatterns = [
    path(POSITIONS_PATH.lstrip("/"), positions, name="pushgateway-positions"),
    path(WEBSOCKET_PATH.lstrip("/"), websocket_over_http, name="pushgateway-websocket-over-http"),
]
