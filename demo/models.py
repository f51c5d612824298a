from django.db import models
from django.urls import reverse

import pushgateway


@pushgateway.register(channels=lambda event: ["events"], private=False)
class Event(models.Model):
    title = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("event", args=[self.pk])


# A comment changes its event's page and the comment counts on the event list.
@pushgateway.register(
    channels=lambda comment: [f"comments-{comment.event_id}", "events"], private=False
)
class Comment(models.Model):
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="comments")
    author = models.CharField(max_length=80)
    body = models.TextField(max_length=2000)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "pk"]

    def __str__(self):
        return f"{self.author}: {self.body[:40]}"

    def as_json(self):
        return {
            "id": self.pk,
            "author": self.author,
            "body": self.body,
            "created": self.created.isoformat(),
        }
