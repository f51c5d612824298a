import json

from django.core.management.base import BaseCommand, CommandError

from pushgateway import HintTooLarge, InvalidChannelName, publish
from pushgateway.backends import get_backend
from pushgateway.exceptions import PrivateChannelUnsupported


class Command(BaseCommand):
    help = "Publish one hint on a channel, e.g. to test a page: pushgateway_publish comments-7"

    def add_arguments(self, parser):
        parser.add_argument("channel")
        parser.add_argument("--data", default=None, help="the hint, as JSON")
        parser.add_argument(
            "--timeout", type=float, default=10.0, help="seconds to wait for delivery"
        )

    def handle(self, channel, data, timeout, **options):
        if getattr(get_backend(), "in_process", False):
            raise CommandError(
                "The in-memory channel layer reaches only WebSockets of the process that "
                "publishes, and this command runs in a process of its own: no page can "
                "receive this hint. Use channels_redis (see docs/deployment.md), or publish "
                "from the server process (a view, a signal)."
            )
        try:
            hint = None if data is None else json.loads(data)
        except ValueError as exc:
            raise CommandError(f"--data is not valid JSON: {exc}") from exc
        try:
            publish(channel, hint)
        except (InvalidChannelName, HintTooLarge, PrivateChannelUnsupported, TypeError) as exc:
            raise CommandError(str(exc)) from exc
        backend = get_backend()
        if not backend.flush(timeout):
            raise CommandError(f"not delivered within {timeout:g}s; is the push service up?")
        if backend.stats["failed"] or backend.stats["dropped"]:
            raise CommandError("delivery failed; see the log above")
        self.stdout.write(f"published to {channel}")
