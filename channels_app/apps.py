from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    label = "pushgateway_channels"
    verbose_name = "Push gateway WebSocket layer"
