"""register(): hints from post_save/post_delete, on the object's and extra channels."""

import json

import pytest
from django.core import serializers

import pushgateway
from demo.models import Comment, Event
from tests.support.hints import registered_as, sent

# The ORM's signals and transactions: they depend on the Django version.
pytestmark = [pytest.mark.matrix, pytest.mark.django_db(transaction=True)]


def test_demo_comment_hints_go_to_object_event_and_list_channels(outbox):
    event = Event.objects.create(title="Party")
    outbox.clear()
    comment = Comment.objects.create(event=event, author="a", body="b")
    hint = {"model": "demo.comment", "pk": str(comment.pk), "action": "created"}
    assert sent(outbox) == [
        (f"demo.comment.{comment.pk}", hint),
        (f"comments-{event.pk}", hint),
        ("events", hint),
    ]


def test_update_and_delete_actions(outbox):
    event = Event.objects.create(title="Party")
    event.title = "Renamed"
    event.save()
    pk = event.pk
    event.delete()
    assert [(m.channel, m.data["action"]) for m in outbox] == [
        (f"demo.event.{pk}", "created"),
        ("events", "created"),
        (f"demo.event.{pk}", "updated"),
        ("events", "updated"),
        (f"demo.event.{pk}", "deleted"),
        ("events", "deleted"),
    ]
    assert outbox[-1].data == {"model": "demo.event", "pk": str(pk), "action": "deleted"}


def test_fixture_loading_publishes_nothing(outbox):
    fields = {"title": "F", "created": "2026-01-01T00:00:00Z"}
    data = json.dumps([{"model": "demo.event", "pk": 99, "fields": fields}])
    for obj in serializers.deserialize("json", data):
        obj.save()  # raw=True, as loaddata does
    assert Event.objects.filter(pk=99).exists()
    assert outbox == []


@pytest.fixture
def bare_event_model():
    """demo.Event with its registration removed for the test, then restored."""
    with registered_as(Event):
        pushgateway.unregister(Event)
        yield Event


def test_register_as_plain_decorator_uses_object_channel_only(outbox, bare_event_model):
    assert pushgateway.register(bare_event_model) is bare_event_model
    event = Event.objects.create(title="x")
    assert sent(outbox) == [
        (
            f"demo.event.{event.pk}",
            {"model": "demo.event", "pk": str(event.pk), "action": "created"},
        )
    ]


def test_register_with_arguments_and_actions_filter(outbox, bare_event_model):
    decorator = pushgateway.register(channels=lambda e: f"feed-{e.pk}", actions=["deleted"])
    decorator(bare_event_model)
    event = Event.objects.create(title="x")
    event.save()
    assert outbox == []
    pk = event.pk
    event.delete()
    assert [m.channel for m in outbox] == [f"demo.event.{pk}", f"feed-{pk}"]


def test_unregistered_models_publish_nothing(outbox, bare_event_model):
    Event.objects.create(title="x")
    assert outbox == []


def test_registering_twice_or_unknown_actions_is_an_error(bare_event_model):
    pushgateway.register(bare_event_model)
    with pytest.raises(pushgateway.AlreadyRegistered, match="demo.Event"):
        pushgateway.register(bare_event_model)
    pushgateway.unregister(bare_event_model)
    with pytest.raises(ValueError, match="unknown actions"):
        pushgateway.register(bare_event_model, actions=["saved"])
    with pytest.raises(pushgateway.NotRegistered):
        pushgateway.unregister(bare_event_model)


def test_invalid_channel_names_are_logged_and_do_not_fail_the_save(
    outbox, bare_event_model, caplog
):
    pushgateway.register(bare_event_model, channels=lambda e: ["not valid", "events"])
    event = Event.objects.create(title="x")
    assert Event.objects.filter(pk=event.pk).exists()
    assert [m.channel for m in outbox] == [f"demo.event.{event.pk}", "events"]
    assert f"no hint for demo.event {event.pk}: invalid channel name 'not valid'" in caplog.text


def test_capture_hints_helper():
    from pushgateway.testing import capture_hints

    with capture_hints() as hints:
        event = Event.objects.create(title="captured")
    assert [(h.channel, h.data["action"]) for h in hints] == [
        (f"demo.event.{event.pk}", "created"),
        ("events", "created"),
    ]


def test_publish_for_covers_what_the_signals_do_not_see(outbox):
    event = Event.objects.create(title="Bulk")
    comments = Comment.objects.bulk_create(
        [Comment(event=event, author="a", body=str(n)) for n in range(3)]
    )
    assert [m for m in outbox if m.channel.startswith("demo.comment")] == []  # bulk: no signals
    outbox.clear()
    pushgateway.publish_for(comments, "created")
    Comment.objects.filter(event=event).update(body="edited")
    pushgateway.publish_for(Comment.objects.filter(event=event), "updated")
    created = [m.channel for m in outbox if m.data["action"] == "created"]
    assert created == [
        name
        for c in comments
        for name in (f"demo.comment.{c.pk}", f"comments-{event.pk}", "events")
    ]
    assert sorted({m.channel for m in outbox if m.data["action"] == "updated"}) == sorted(
        [f"demo.comment.{c.pk}" for c in comments] + [f"comments-{event.pk}", "events"]
    )


def test_publish_for_waits_for_the_commit_and_refuses_what_it_cannot_do(outbox):
    from django.db import transaction

    event = Event.objects.create(title="Bulk")
    outbox.clear()
    with transaction.atomic():
        pushgateway.publish_for([event], "deleted")
        assert outbox == []
    assert [m.data["action"] for m in outbox] == ["deleted", "deleted"]
    with pytest.raises(ValueError, match="unknown action 'moved'"):
        pushgateway.publish_for([event], "moved")
    from django.contrib.contenttypes.models import ContentType

    with pytest.raises(pushgateway.NotRegistered):
        pushgateway.publish_for(ContentType.objects.all()[:1])


def test_hints_over_the_size_limit_are_logged_and_do_not_fail_the_save(
    outbox, bare_event_model, caplog, settings
):
    settings.PUSHGATEWAY = {**settings.PUSHGATEWAY, "OPTIONS": {"MAX_DATA_BYTES": 10}}
    pushgateway.register(bare_event_model)
    event = Event.objects.create(title="x")
    assert Event.objects.filter(pk=event.pk).exists() and outbox == []
    assert f"no hint for demo.event {event.pk}: hint data for 'demo.event.{event.pk}' is" in (
        caplog.text
    )
