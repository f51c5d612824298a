"""HTTP routes of the push gateway; include them in your URLconf:
``path("", include("channels_app.urls"))``.

- ``pushgateway/positions/``: the positions view, which pages poll while they have no socket;
- ``ws/pushgateway/``: the WebSocket-over-HTTP endpoint used behind Pushpin or Fastly Fanout;
- ``pushgateway/stream/``: streams held by Pushpin or Fastly Fanout (GRIP HTTP streaming);
  without a GRIP proxy, channels_app.asgi serves this path itself.
"""

from django.urls import path

from pushgateway.constants import POSITIONS_PATH, STREAM_PATH, WEBSOCKET_PATH

from .grip import websocket_over_http
from .gripstream import grip_stream
from .views import positions

urlpatterns = [
    path(POSITIONS_PATH.lstrip("/"), positions, name="pushgateway-positions"),
    path(WEBSOCKET_PATH.lstrip("/"), websocket_over_http, name="pushgateway-websocket-over-http"),
    path(STREAM_PATH.lstrip("/"), grip_stream, name="pushgateway-grip-stream"),
]
