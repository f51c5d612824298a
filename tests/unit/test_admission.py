"""What one client may cost, in-process: the per-address join budget that outlives its
connections, the cap on joined channels, the connection limit per address, and the bounded
table of addresses (channels_app.admission, pushgateway.ratelimit)."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator

from channels_app import consumer as consumer_module
from channels_app.admission import Admission, get_admission
from channels_app.asgi import application
from channels_app.hub import get_hub
from pushgateway.backends.base import Limits
from pushgateway.constants import WEBSOCKET_PATH, CloseCode, ErrorCode
from pushgateway.metrics import Metrics
from pushgateway.protocol import Session
from pushgateway.ratelimit import AddressBudgets, TokenBucket, address_key
from tests.support.sockets import ORIGIN, send, subscribe


async def connect_from(host: str | None, port: int = 50000):
    """A socket whose ASGI scope says it comes from `host` (None: no client address)."""
    socket = WebsocketCommunicator(application, WEBSOCKET_PATH, headers=ORIGIN)
    socket.scope["client"] = [host, port] if host is not None else None
    connected, _ = await socket.connect()
    assert connected
    return socket


def channels_options(settings, **options) -> None:
    settings.PUSHGATEWAY = {
        "BACKEND": "pushgateway.backends.channels.ChannelsBackend",
        "OPTIONS": options,
    }


@pytest.fixture
def no_hold(monkeypatch):
    """Refused sockets are read again at once (Reply.hold): tests here are not about time."""
    monkeypatch.setattr(consumer_module, "MAX_HOLD_SECONDS", 0)


async def until(condition, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_join_budget_of_an_address_survives_reconnects(settings, no_hold):
    channels_options(settings, ADDRESS_JOIN_BURST=3, ADDRESS_JOIN_RATE=0.001)
    other = await connect_from("10.0.0.2")
    await subscribe(other, "shared")
    page = await connect_from("10.0.0.1")
    for channel in ("a1", "a2", "a3"):
        await subscribe(page, channel)
    refused = await send(page, {"type": "subscribe", "channel": "a4"})
    assert (refused["code"], refused["channel"]) == (ErrorCode.RATE_LIMITED, "a4")
    assert refused["retry_after"] > 0 and "your address" in refused["message"]
    await subscribe(page, "shared")  # a channel the process serves already costs nothing
    await page.disconnect()

    again = await connect_from("10.0.0.1", port=50001)  # a new connection, a fresh own budget
    refused = await send(again, {"type": "subscribe", "channel": "a5"})
    assert refused["code"] == ErrorCode.RATE_LIMITED  # but the address spent its joins
    await subscribe(other, "b1")  # another address has its own budget
    for socket in (again, other):
        await socket.disconnect()


async def test_a_connection_without_an_address_is_held_to_its_own_budget(settings, no_hold):
    channels_options(settings, ADDRESS_JOIN_BURST=1, ADDRESS_JOIN_RATE=0.001)
    for n in range(2):  # a Unix socket has no address: nothing to share a budget with
        socket = await connect_from(None)
        await subscribe(socket, f"unix-{n}-1")
        await subscribe(socket, f"unix-{n}-2")
        await socket.disconnect()


async def test_past_max_channels_a_new_channel_is_unavailable_and_served_ones_are_not(settings):
    channels_options(settings, MAX_CHANNELS=2)
    first = await connect_from("10.0.0.1")
    await subscribe(first, "c1")
    await subscribe(first, "c2")
    refused = await send(first, {"type": "subscribe", "channel": "c3"})
    assert (refused["code"], refused["channel"]) == (ErrorCode.UNAVAILABLE, "c3")
    assert "MAX_CHANNELS" in refused["message"]
    second = await connect_from("10.0.0.2")
    await subscribe(second, "c1")  # served already: no join, no refusal
    assert get_hub().joined == {"c1", "c2"}

    assert (await send(first, {"type": "unsubscribe", "channel": "c2"}))["type"] == "unsubscribed"
    await until(lambda: get_hub().joined == {"c1"})
    await subscribe(first, "c3")  # room again
    assert get_hub().joined == {"c1", "c3"}
    for socket in (first, second):
        await socket.disconnect()


async def test_connections_past_the_address_limit_are_closed_4029(settings):
    channels_options(settings, MAX_CONNECTIONS_PER_ADDRESS=2)
    kept = [await connect_from("10.0.0.1", port=50000 + n) for n in range(2)]
    refused = await connect_from("10.0.0.1", port=50002)  # accepted, to say why it closes
    closing = await refused.receive_output(timeout=2)
    assert closing == {"type": "websocket.close", "code": CloseCode.TOO_MANY_CONNECTIONS}
    assert type(closing["code"]) is int  # daphne (autobahn) refuses an IntEnum with 1011
    elsewhere = await connect_from("10.0.0.2")
    await subscribe(elsewhere, "still-served")

    await kept[0].disconnect()
    await until(lambda: get_admission().connections["10.0.0.1"] == 1)  # counted out
    again = await connect_from("10.0.0.1", port=50003)
    await subscribe(again, "room-again")
    for socket in (kept[1], elsewhere, again):
        await socket.disconnect()


def test_a_rate_limited_subscribe_asks_the_transport_to_hold_until_it_may_again():
    clock = [0.0]
    session = Session(churn=TokenBucket(0.5, 1, lambda: clock[0]))
    assert session.receive_text('{"type": "subscribe", "channel": "h1"}').hold == 0
    refused = session.receive_text('{"type": "subscribe", "channel": "h2"}')
    assert refused.hold == 2.0 and '"retry_after":2.0' in refused.frames[0]


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same /64: one client
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4 on a dual-stack socket
        ("unix-peer", "unix-peer"),  # not an address (a forged X-Forwarded-For): as it is
        ("x" * 5000, "x" * 64),
        ("", None),
        (None, None),
        (["a list"], None),
    ],
)
def test_address_keys(host, key):
    assert address_key(host) == key


def test_the_address_table_stays_bounded_and_forgets_full_budgets_first():
    clock = [0.0]
    budgets = AddressBudgets(rate=1, burst=2, clock=lambda: clock[0], size=10)
    assert budgets.take("busy") and budgets.take("busy") and not budgets.take("busy")
    for n in range(100):  # many addresses, each spending a token
        clock[0] += 0.001
        assert budgets.take(f"10.0.{n}.1")
        budgets.take("busy")  # "busy" keeps coming back: recently used, never full
        assert len(budgets.buckets) <= 10
    assert not budgets.take("busy")  # remembered throughout, its budget still spent
    clock[0] += 10  # everyone refilled: full budgets go first, so nothing is lost
    for n in range(10):
        budgets.take(f"new-{n}")
    assert len(budgets.buckets) <= 10


def test_refusals_and_the_address_table_are_counted():
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    limits = Limits(MAX_CONNECTIONS_PER_ADDRESS=1, ADDRESS_JOIN_BURST=1, ADDRESS_JOIN_RATE=0.5)
    admission = Admission(limits, Metrics(registry), clock=lambda: 0.0)
    assert admission.connect("10.0.0.1") and not admission.connect("10.0.0.1")
    assert admission.join("10.0.0.1") is None and admission.join("10.0.0.2") is None
    assert admission.join("10.0.0.1") == 2.0  # one token at 0.5 per second

    def sample(name, **labels):
        return registry.get_sample_value(name, labels)

    assert sample("pushgateway_connections_refused_total", reason="address_limit") == 1
    assert sample("pushgateway_subscribes_refused_total", reason="address_budget") == 1
    assert sample("pushgateway_addresses_tracked") == 2
    admission.disconnect("10.0.0.1")
    assert admission.connections == {} and admission.connect("10.0.0.1")
