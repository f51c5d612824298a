"""publish()/apublish(): validation and errors.

Transactions: tests/integration/test_transactions.py."""

import pytest
from django.db import transaction

import pushgateway
from pushgateway import InvalidChannelName, apublish, publish
from tests.support.hints import sent

# The ORM's signals and transactions: they depend on the Django version.
pytestmark = [pytest.mark.matrix, pytest.mark.django_db(transaction=True)]


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


def test_data_over_the_size_limit_is_a_clear_error_at_publish(outbox, settings):
    settings.PUSHGATEWAY = {**settings.PUSHGATEWAY, "OPTIONS": {"MAX_DATA_BYTES": 100}}
    publish("c", {"pks": list(range(30))})  # 89 bytes as JSON: fine
    message = r"hint data for 'c' is 119 bytes as JSON, over the limit of 100 \(PUSHGATEWAY"
    with pytest.raises(pushgateway.HintTooLarge, match=message), transaction.atomic():
        publish("c", {"pks": list(range(40))})  # raised at the call, not at the commit
    with pytest.raises(ValueError, match="over the limit of 100"):  # HintTooLarge is one
        publish("c", "é" * 51)  # bytes, not characters: 104 as UTF-8
    assert [m.data for m in outbox] == [{"pks": list(range(30))}]


async def test_apublish_has_the_same_size_limit(outbox):
    with pytest.raises(
        pushgateway.HintTooLarge, match="4098 bytes as JSON, over the limit of 4096"
    ):
        await apublish("c", "x" * 4096)
    assert outbox == []


@pytest.mark.parametrize(
    "data",
    [float("nan"), {"seq": float("inf")}, "\ud800", {"\udfff": 1}],
    ids=["NaN", "Infinity", "lone surrogate", "lone surrogate in a key"],
)
def test_data_a_browser_cannot_parse_is_refused_at_publish(outbox, data):
    # NaN and Infinity are not JSON (JSON.parse throws, the page would never hear of the
    # change); a lone surrogate is not UTF-8 (the frame could not be sent at all).
    with pytest.raises(TypeError, match="must be JSON-serialisable"):
        publish("c", data)
    assert outbox == []
