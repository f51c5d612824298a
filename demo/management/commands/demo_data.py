from django.core.management.base import BaseCommand

from demo.models import Comment, Event


class Command(BaseCommand):
    help = "Create a sample event with a comment if there are no events yet."

    def handle(self, **options):
        if Event.objects.exists():
            return
        event = Event.objects.create(title="Launch party")
        Comment.objects.create(event=event, author="Ada", body="Open this page in two tabs!")
        self.stdout.write("created a sample event")
