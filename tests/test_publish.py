"""publish()/apublish(): validation, deferral to commit, de-duplication."""

import pytest
from django.db import transaction

import pushgateway
from pushgateway import InvalidChannelName, apublish, publish

pytestmark = pytest.mark.django_db(transaction=True)


def sent(outbox):
    return [(m.channel, m.data) for m in outbox]


def test_outside_a_transaction_publishes_at_once(outbox):
    publish("comments-7", {"pk": "1"})
    assert sent(outbox) == [("comments-7", {"pk": "1"})]
    assert outbox[0].id


def test_inside_atomic_waits_for_commit(outbox):
    with transaction.atomic():
        publish("comments-7", {"pk": "1"})
        assert outbox == []
    assert sent(outbox) == [("comments-7", {"pk": "1"})]


def test_rollback_publishes_nothing(outbox):
    with pytest.raises(RuntimeError), transaction.atomic():
        publish("comments-7", {"pk": "1"})
        raise RuntimeError("boom")
    assert outbox == []
    publish("after", None)
    assert sent(outbox) == [("after", None)]


def test_identical_hints_in_one_transaction_are_sent_once(outbox):
    with transaction.atomic():
        for _ in range(3):
            publish("comments-7", {"pk": "1", "action": "updated"})
        publish("comments-7", {"action": "updated", "pk": "1"})  # same hint, other key order
        publish("comments-7", {"pk": "2", "action": "updated"})
        publish("events", {"pk": "1", "action": "updated"})
    assert sent(outbox) == [
        ("comments-7", {"pk": "1", "action": "updated"}),
        ("comments-7", {"pk": "2", "action": "updated"}),
        ("events", {"pk": "1", "action": "updated"}),
    ]


def test_each_transaction_gets_its_own_hint(outbox):
    for _ in range(2):
        with transaction.atomic():
            publish("c", {"pk": "1"})
    assert sent(outbox) == [("c", {"pk": "1"}), ("c", {"pk": "1"})]
    assert outbox[0].id != outbox[1].id


def test_savepoint_rollback_drops_its_hints_but_not_the_outer_ones(outbox):
    with transaction.atomic():
        publish("outer", 1)
        try:
            with transaction.atomic():
                publish("inner", 2)
                publish("outer", 1)  # a duplicate of a hint that survives
                raise ValueError
        except ValueError:
            pass
        publish("inner", 2)  # published again after the savepoint was rolled back
    assert sent(outbox) == [("outer", 1), ("inner", 2)]


def test_hint_from_a_rolled_back_transaction_does_not_block_the_next_one(outbox):
    try:
        with transaction.atomic():
            publish("c", 1)
            raise ValueError
    except ValueError:
        pass
    with transaction.atomic():
        publish("c", 1)
    assert sent(outbox) == [("c", 1)]


@pytest.mark.parametrize("name", ["", "has space", "ümlaut", "a/b", "x" * 101, None, 7])
def test_invalid_channel_names_raise_with_the_rule(outbox, name):
    with pytest.raises(InvalidChannelName, match=r"1-100 characters from A-Z, a-z, 0-9"):
        publish(name)
    assert outbox == []


def test_data_json_cannot_carry_is_a_clear_error(outbox):
    with pytest.raises(TypeError, match="hint data for 'c' must be JSON-serialisable"):
        publish("c", {"when": object()})
    with pytest.raises(TypeError, match="JSON-serialisable"), transaction.atomic():
        publish("c", {1, 2})
    assert outbox == []


def test_valid_names_at_the_limits(outbox):
    publish("x" * 100)
    publish("A.b_c-9")
    assert [m.channel for m in outbox] == ["x" * 100, "A.b_c-9"]


def test_a_broken_backend_does_not_break_the_caller(settings, caplog):
    settings.PUSHGATEWAY = {"BACKEND": "tests.test_publish.ExplodingBackend"}
    with transaction.atomic():
        publish("c", 1)
    publish("c", 2)
    assert "could not publish to 'c'" in caplog.text


class ExplodingBackend(pushgateway.backends.base.BaseBackend):
    def send_messages(self, messages):
        raise ConnectionError("push service down")


async def test_apublish(outbox):
    await apublish("comments-7", {"pk": "1"})
    assert sent(outbox) == [("comments-7", {"pk": "1"})]
    with pytest.raises(InvalidChannelName):
        await apublish("bad name")
