from django.urls import include, path

import pushgateway.metrics

from . import views

urlpatterns = [
    path("", views.event_list, name="event_list"),
    path("events.json", views.event_list_json, name="event_list_json"),
    path("events/<int:pk>/", views.event_detail, name="event"),
    path("events/<int:pk>/comments.json", views.comments_json, name="comments_json"),
    path("events/<int:pk>/live/", views.event_live, name="event_live"),
    path("events/<int:pk>/comments/", views.event_comments, name="event_comments"),
    path("", include("channels_app.urls")),  # the positions view; the view behind Pushpin
    path("metrics", pushgateway.metrics.view),  # with PUSHGATEWAY_METRICS=1
]
