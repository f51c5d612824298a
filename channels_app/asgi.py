"""ASGI application: Django over HTTP and the pushgateway WebSocket on one port.

Serve with ``daphne channels_app.asgi:application`` (set DJANGO_SETTINGS_MODULE). With
DEBUG on, static files are served too, as ``runserver`` does. Your own project composes the
same pieces in its asgi.py: see docs/installation.md.
"""

from django.conf import settings
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from .routing import websocket_urlpatterns  # noqa: E402

http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
