from django.core.management.base import BaseCommand

from demo.models import Comment, Event


class Command(BaseCommand):
    help = "Create a sample event with a comment if there are no events yet."

    def handle(self, **options):
        if Event.objects.exists():
            return
        # bulk_create sends no post_save, so no hints: no page watches a database being
        # seeded, and with the demo's in-memory layer no page could receive them anyway.
        [event] = Event.objects.bulk_create([Event(title="Launch party")])
        Comment.objects.bulk_create(
            [Comment(event=event, author="Ada", body="Open this page in two tabs!")]
        )
        self.stdout.write("created a sample event")
