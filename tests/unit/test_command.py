import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.matrix  # depends on the Python or Django version


def test_publishes_with_json_data(outbox, capsys):
    call_command("pushgateway_publish", "comments-7", "--data", '{"pk": "3"}')
    assert [(m.channel, m.data) for m in outbox] == [("comments-7", {"pk": "3"})]
    assert "published to comments-7" in capsys.readouterr().out


def test_publishes_without_data(outbox):
    call_command("pushgateway_publish", "events")
    assert [(m.channel, m.data) for m in outbox] == [("events", None)]


def test_bad_json_and_bad_channel_are_clear_errors(outbox):
    with pytest.raises(CommandError, match="--data is not valid JSON"):
        call_command("pushgateway_publish", "events", "--data", "{nope")
    with pytest.raises(CommandError, match="invalid channel name 'no spaces'"):
        call_command("pushgateway_publish", "no spaces")
    assert outbox == []


def test_with_the_in_memory_layer_it_says_no_page_can_receive_the_hint(settings):
    settings.PUSHGATEWAY = {"BACKEND": "pushgateway.backends.channels.ChannelsBackend"}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with pytest.raises(CommandError, match="runs in a process of its own: no page can receive"):
        call_command("pushgateway_publish", "comments-1")


def test_data_over_the_limit_or_not_json_a_browser_reads_is_a_clear_error(outbox):
    with pytest.raises(CommandError, match="over the limit of 4096"):
        call_command("pushgateway_publish", "events", "--data", '"' + "x" * 5000 + '"')
    with pytest.raises(CommandError, match="must be JSON-serialisable"):
        call_command("pushgateway_publish", "events", "--data", "NaN")
    assert outbox == []


def test_the_demos_seeding_says_one_line_and_publishes_nothing(tmp_path):
    """`./dev demo` seeds a fresh database with `manage.py demo_data`. No page can watch a
    database being created, so its hints would only make noise: with the demo's in-memory
    layer a warning that no page can receive them, behind Pushpin errors while Pushpin is
    not up yet. A new user sees one line."""
    from tests.support.servers import SqliteDatabase, manage, run_python

    database = SqliteDatabase(tmp_path / "demo.sqlite3")
    seeded = manage("demo_data", redis_url=None, env=database.env)
    assert (seeded.returncode, seeded.stdout, seeded.stderr) == (0, "created a sample event\n", "")
    count = "from demo.models import *; print(Event.objects.count(), Comment.objects.count())"
    assert run_python(count, redis_url=None, env=database.env).stdout == "1 1\n"
