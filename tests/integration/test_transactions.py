"""The after-commit promise, on SQLite and on PostgreSQL.

Hints go out when the transaction that published them commits, never before, never after a
rollback, once per transaction. Every test runs on each database (the `alias` fixture), and
a page told of a change and re-fetching (`refetched`) sees that change already committed.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.apps import apps
from django.db import connections, transaction
from django.http import HttpResponse
from django.test import Client, override_settings
from django.urls import path

from demo.models import Comment, Event
from pushgateway import publish
from pushgateway.backends.base import BaseBackend
from tests.support.hints import sent

pytestmark = pytest.mark.matrix  # depends on the Python or Django version


def in_another_thread(function):
    """Call `function` on a thread of its own, so on database connections of its own."""

    def run():
        try:
            return function()
        finally:
            connections.close_all()  # this thread's connections only

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result(timeout=10)


class RefetchingBackend(BaseBackend):
    """Does what a page does with a hint: reads the object again, through another connection.

    Records (channel, what the re-fetch saw) in `refetched`: str() of the object, or None
    when it is not there.
    """

    options = ("ALIAS",)
    refetched: list[tuple[str, str | None]] = []

    def __init__(self, ALIAS):
        super().__init__(ALIAS=ALIAS)
        self.alias = ALIAS

    def send_messages(self, messages):
        for message in messages:
            model = apps.get_model(message.data["model"])
            pk = message.data["pk"]
            seen = in_another_thread(
                lambda model=model, pk=pk: model.objects.using(self.alias).filter(pk=pk).first()
            )
            self.refetched.append((message.channel, None if seen is None else str(seen)))


@pytest.fixture
def refetched(alias):
    backend = {"BACKEND": f"{__name__}.RefetchingBackend", "OPTIONS": {"ALIAS": alias}}
    with override_settings(PUSHGATEWAY=backend):
        RefetchingBackend.refetched.clear()
        yield RefetchingBackend.refetched
        RefetchingBackend.refetched.clear()


def test_hints_wait_for_the_commit_and_a_refetch_sees_the_change(alias, refetched):
    event = Event.objects.using(alias).create(title="Before")
    refetched.clear()
    with transaction.atomic(using=alias):
        event.title = "After"
        event.save()
        assert refetched == []
    assert refetched == [(f"demo.event.{event.pk}", "After"), ("events", "After")]


def test_rollback_publishes_nothing(outbox, alias):
    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        Event.objects.using(alias).create(title="Never")
        publish("comments-7", {"pk": "1"}, using=alias)
        raise RuntimeError("boom")
    assert outbox == []
    assert not Event.objects.using(alias).exists()


def test_saves_in_one_transaction_are_coalesced(outbox, alias):
    event = Event.objects.using(alias).create(title="Party")
    outbox.clear()
    with transaction.atomic(using=alias):
        for title in ("One", "Two"):
            event.title = title
            event.save()
        assert outbox == []
    hint = {"model": "demo.event", "pk": str(event.pk), "action": "updated"}
    assert sent(outbox) == [(f"demo.event.{event.pk}", hint), ("events", hint)]


def test_identical_hints_in_one_transaction_are_sent_once(outbox, alias):
    with transaction.atomic(using=alias):
        for _ in range(3):
            publish("comments-7", {"pk": "1", "action": "updated"}, using=alias)
        publish("comments-7", {"action": "updated", "pk": "1"}, using=alias)  # other key order
        publish("comments-7", {"pk": "2", "action": "updated"}, using=alias)
        publish("events", {"pk": "1", "action": "updated"}, using=alias)
    assert sent(outbox) == [
        ("comments-7", {"pk": "1", "action": "updated"}),
        ("comments-7", {"pk": "2", "action": "updated"}),
        ("events", {"pk": "1", "action": "updated"}),
    ]


def test_a_saves_hints_are_de_duplicated_channel_by_channel(outbox, alias):
    """A save publishes one hint on several channels; a channel that has it waiting already
    does not get it twice, and the others still do."""
    event = Event.objects.using(alias).create(title="Party")
    outbox.clear()
    hint = {"model": "demo.event", "pk": str(event.pk), "action": "updated"}
    with transaction.atomic(using=alias):
        publish("events", hint, using=alias)
        event.save()
    assert sent(outbox) == [("events", hint), (f"demo.event.{event.pk}", hint)]


def test_each_transaction_gets_its_own_hint(outbox, alias):
    for _ in range(2):
        with transaction.atomic(using=alias):
            publish("c", {"pk": "1"}, using=alias)
    assert sent(outbox) == [("c", {"pk": "1"}), ("c", {"pk": "1"})]
    assert outbox[0].id != outbox[1].id


def test_hint_from_a_rolled_back_transaction_does_not_block_the_next_one(outbox, alias):
    with pytest.raises(ValueError), transaction.atomic(using=alias):
        publish("c", 1, using=alias)
        raise ValueError
    with transaction.atomic(using=alias):
        publish("c", 1, using=alias)
    assert sent(outbox) == [("c", 1)]


def test_savepoint_rollback_drops_its_hints_but_not_the_outer_ones(outbox, alias):
    with transaction.atomic(using=alias):
        publish("outer", 1, using=alias)
        with pytest.raises(ValueError), transaction.atomic(using=alias):
            publish("inner", 2, using=alias)
            publish("outer", 1, using=alias)  # a duplicate of a hint that survives
            raise ValueError
        publish("inner", 2, using=alias)  # published again after the savepoint was rolled back
    assert sent(outbox) == [("outer", 1), ("inner", 2)]


def test_a_released_savepoint_keeps_its_hints_until_the_outer_commit(outbox, alias):
    with transaction.atomic(using=alias):
        with transaction.atomic(using=alias):
            kept = Event.objects.using(alias).create(title="Kept")
        with pytest.raises(ValueError), transaction.atomic(using=alias):
            with transaction.atomic(using=alias):  # released into a savepoint rolled back
                Event.objects.using(alias).create(title="Dropped")
            raise ValueError
        assert outbox == []
    assert [m.channel for m in outbox] == [f"demo.event.{kept.pk}", "events"]
    assert list(Event.objects.using(alias).values_list("title", flat=True)) == ["Kept"]


def test_a_durable_block_publishes_when_it_commits(outbox, alias):
    with transaction.atomic(using=alias, durable=True):
        event = Event.objects.using(alias).create(title="Durable")
        assert outbox == []
    assert [m.channel for m in outbox] == [f"demo.event.{event.pk}", "events"]
    # A durable block inside a transaction is refused; the outer save is rolled back unseen.
    outbox.clear()
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic(using=alias):
        Event.objects.using(alias).create(title="Never")
        with transaction.atomic(using=alias, durable=True):
            pass
    assert outbox == []


def test_select_for_update_hints_follow_the_lock_release(alias, refetched):
    event = Event.objects.using(alias).create(title="Before")
    refetched.clear()
    with transaction.atomic(using=alias):
        locked = Event.objects.using(alias).select_for_update().get(pk=event.pk)
        locked.title = "Locked and changed"
        locked.save()
        assert refetched == []
    assert refetched == [
        (f"demo.event.{event.pk}", "Locked and changed"),
        ("events", "Locked and changed"),
    ]


def test_a_save_in_a_worker_thread_is_published_at_its_own_commit(alias, refetched):
    event = Event.objects.using(alias).create(title="Before")
    refetched.clear()

    def worker():
        with transaction.atomic(using=alias):
            renamed = Event.objects.using(alias).get(pk=event.pk)
            renamed.title = "From a worker"
            renamed.save()

    with transaction.atomic(using=alias):
        in_another_thread(worker)
        # The worker's transaction committed: its hints are out; this one's still waits.
        worker_hints = [(f"demo.event.{event.pk}", "From a worker"), ("events", "From a worker")]
        assert refetched == worker_hints
        comment = Comment.objects.using(alias).create(event=event, author="main", body="thread")
        assert len(refetched) == 2
    assert refetched[2:] == [
        (f"demo.comment.{comment.pk}", "main: thread"),
        (f"comments-{event.pk}", "main: thread"),
        ("events", "main: thread"),
    ]


def save_event(request, alias, title):
    """A view that saves, then fails when asked to."""
    event = Event.objects.using(alias).create(title=title)
    if title == "fail":
        raise ValueError("the view failed after saving")
    return HttpResponse(f"{event.pk} {len(RefetchingBackend.refetched)}")


urlpatterns = [path("save/<str:alias>/<str:title>/", save_event)]


@pytest.fixture
def atomic_requests(alias, settings, monkeypatch):
    """Each request in a transaction on `alias`, as ATOMIC_REQUESTS does; this module's URLs."""
    settings.ROOT_URLCONF = __name__
    monkeypatch.setitem(connections.settings[alias], "ATOMIC_REQUESTS", True)


def test_atomic_requests_publish_after_the_response_commits(alias, refetched, atomic_requests):
    response = Client().post(f"/save/{alias}/Saved/")
    assert response.status_code == 200
    pk, published_during_view = response.content.decode().split()
    assert published_during_view == "0"
    assert refetched == [(f"demo.event.{pk}", "Saved"), ("events", "Saved")]

    response = Client(raise_request_exception=False).post(f"/save/{alias}/fail/")
    assert response.status_code == 500
    assert len(refetched) == 2  # nothing from the failed request, whose save was rolled back
    assert not Event.objects.using(alias).filter(title="fail").exists()


@pytest.mark.django_db(databases=["default", "postgres"], transaction=True)
@pytest.mark.parametrize(
    ("alias", "other"),
    [("default", "postgres"), ("postgres", "default")],
    ids=["sqlite", "postgresql"],
)
def test_hints_follow_the_transaction_of_the_database_saved_on(outbox, alias, other):
    with pytest.raises(ValueError), transaction.atomic(using=other):
        Event.objects.using(other).create(title="Rolled back with the other database")
        at_once = Event.objects.using(alias).create(title="No transaction on its database")
        assert [m.channel for m in outbox] == [f"demo.event.{at_once.pk}", "events"]
        with transaction.atomic(using=alias):
            committed = Event.objects.using(alias).create(title="Its own transaction")
        assert len(outbox) == 4
        raise ValueError
    assert [m.channel for m in outbox] == [
        f"demo.event.{at_once.pk}",
        "events",
        f"demo.event.{committed.pk}",
        "events",
    ]
