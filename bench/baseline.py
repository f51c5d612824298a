"""The baseline for the fan-out benchmark: the textbook Channels design.

Every socket's consumer joins the channel-layer group itself (group_add per socket) and
Channels dispatches each group message to each consumer. Same daphne, same layer, same
frames as the project, so the benchmark compares the designs and nothing else.
"""

import json

from django.core.asgi import get_asgi_application

get_asgi_application()  # set up Django before importing consumers

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from pushgateway.layer import group_name  # noqa: E402
from pushgateway.protocol import subscribed_frame  # noqa: E402

EVENT_TYPE = "bench.message"


class BaselineConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.groups_joined = set()
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        frame = json.loads(text_data)
        if frame.get("type") == "subscribe":
            group = group_name(frame["channel"])
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)
            await self.send(subscribed_frame(frame["channel"], None, None))

    async def bench_message(self, event):
        await self.send(text_data=event["text"])

    async def disconnect(self, code):
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/pushgateway/", BaselineConsumer.as_asgi())])}
)
