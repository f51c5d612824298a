"""publish()/apublish(): validation and errors. Transactions: tests/test_transactions.py."""

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
