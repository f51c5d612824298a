from django.apps import AppConfig


class PushGatewayConfig(AppConfig):
    name = "pushgateway"
    verbose_name = "Push gateway"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
