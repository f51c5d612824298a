"""System checks report each kind of misconfiguration with its id."""

import pytest
from django.core.checks import run_checks

from pushgateway.checks import check_settings
from tests.support.hints import registered_as

pytestmark = pytest.mark.matrix  # depends on the Python or Django version


def ids(settings_value, settings):
    settings.PUSHGATEWAY = settings_value
    return [(m.id, m.msg) for m in check_settings() if m.is_serious()]


def test_default_settings_pass(settings):
    settings.PUSHGATEWAY = {}
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}
    }
    assert check_settings() == []


@pytest.mark.parametrize(
    ("value", "check_id", "text"),
    [
        ("channels", "pushgateway.E001", "must be a dict"),
        ({"BACKEND": "x", "OPTION": {}}, "pushgateway.E001", "unknown keys ['OPTION']"),
        (
            {"BACKEND": "pushgateway.backends.nope.Backend"},
            "pushgateway.E002",
            "cannot be imported",
        ),
        ({"BACKEND": "pushgateway.publish"}, "pushgateway.E003", "not a pushgateway backend"),
        ({"OPTIONS": []}, "pushgateway.E004", "OPTIONS'] must be a dict"),
        (
            {"OPTIONS": {"LAYERS": "x"}},
            "pushgateway.E004",
            "Unknown PUSHGATEWAY OPTIONS ['LAYERS']",
        ),
        ({"OPTIONS": {"LAYER": "other"}}, "pushgateway.E005", "channel layer 'other'"),
    ],
)
def test_misconfiguration_is_reported(settings, value, check_id, text):
    [(found_id, message)] = ids(value, settings)
    assert found_id == check_id
    assert text in message


def test_missing_channel_layers(settings):
    settings.PUSHGATEWAY = {}
    del settings.CHANNEL_LAYERS
    [message] = check_settings()
    assert message.id == "pushgateway.E005"
    assert "CHANNEL_LAYERS does not define it" in message.msg


def test_the_in_memory_layer_is_fine_in_development_and_a_warning_for_deployment(settings):
    settings.PUSHGATEWAY = {}
    assert [m for m in run_checks() if m.id.startswith("pushgateway")] == []
    deploy = [m for m in run_checks(include_deployment_checks=True) if m.id.startswith("push")]
    assert [m.id for m in deploy] == ["pushgateway.W001"]
    assert "a second server process, a worker or a management command" in deploy[0].msg
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}
    }
    assert [
        m for m in run_checks(include_deployment_checks=True) if m.id == "pushgateway.W001"
    ] == []


def test_models_public_by_nobodys_choice_are_a_deployment_warning(settings):
    from demo.models import Event

    settings.PUSHGATEWAY = {"OPTIONS": {}}
    with registered_as(Event, channels=lambda event: ["events"]):  # no private=
        deploy = [m for m in run_checks(include_deployment_checks=True) if m.id == W005]
        assert len(deploy) == 1 and "demo.Event publish hints on public channels" in deploy[0].msg
        assert not [m for m in run_checks() if m.id == W005]  # only with --deploy
        settings.PUSHGATEWAY = {"OPTIONS": {"PRIVATE": True}}
        assert not [m for m in run_checks(include_deployment_checks=True) if m.id == W005]


W005 = "pushgateway.W005"


def test_runserver_without_daphne_is_a_warning_while_developing(settings):
    settings.PUSHGATEWAY = {}
    settings.DEBUG = True
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "daphne"]
    [message] = [m for m in run_checks() if m.id.startswith("pushgateway")]
    assert message.id == "pushgateway.W004" and "runserver serves WSGI" in message.msg
    settings.DEBUG = False  # in production the server is started by other means
    assert [m for m in run_checks() if m.id.startswith("pushgateway")] == []


def test_options_of_other_backends(settings):
    settings.PUSHGATEWAY = {
        "BACKEND": "pushgateway.backends.console.ConsoleBackend",
        "OPTIONS": {"stream": None},
    }
    assert check_settings() == []


CORE = "channels_redis.core.RedisChannelLayer"
PUBSUB = "channels_redis.pubsub.RedisPubSubChannelLayer"
URL = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("layer", "hosts", "expected"),
    [
        # redis-py's default socket timeout (5 s) cuts the core layer's 5 s blocking receive.
        (CORE, [URL], ["pushgateway.W002"]),
        (CORE, [{"address": URL, "socket_timeout": 3}], ["pushgateway.W002"]),
        (CORE, [{"address": URL, "socket_timeout": None}], []),
        (PUBSUB, [URL], []),
        # Sentinel: the position store and the publisher follow it as the layers do.
        (PUBSUB, [{"master_name": "m", "sentinels": [("127.0.0.1", 26379)]}], []),
        (CORE, [{"master_name": "m", "sentinels": [("127.0.0.1", 1)]}], ["pushgateway.W002"]),
    ],
)
def test_what_a_redis_layer_can_get_wrong_is_a_warning(settings, layer, hosts, expected):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
        "push": {"BACKEND": layer, "CONFIG": {"hosts": hosts}},
    }
    settings.PUSHGATEWAY = {"OPTIONS": {"LAYER": "push"}}
    messages = check_settings()
    assert [m.id for m in messages] == expected
    assert all("CHANNEL_LAYERS['push']" in m.msg for m in messages)


LIMITS = {
    "MAX_DATA_BYTES": 1024,
    "SUBSCRIBE_RATE": 2.5,
    "SUBSCRIBE_BURST": 20,
    "MAX_CHANNELS": 500,
    "ADDRESS_JOIN_RATE": 0.5,
    "ADDRESS_JOIN_BURST": 50,
    "MAX_CONNECTIONS_PER_ADDRESS": 30,
}


@pytest.mark.parametrize(
    "backend",
    [
        {"BACKEND": "pushgateway.backends.channels.ChannelsBackend"},
        {
            "BACKEND": "pushgateway.backends.fanout.FanoutBackend",
            "OPTIONS": {"GRIP_URL": "http://127.0.0.1:1?key=k"},
        },
        {"BACKEND": "pushgateway.backends.locmem.LocMemBackend"},
        {"BACKEND": "pushgateway.backends.console.ConsoleBackend"},
        {"BACKEND": "pushgateway.backends.dummy.DummyBackend"},
    ],
    ids=lambda b: b["BACKEND"].rsplit(".", 1)[-1],
)
def test_every_backend_accepts_the_limits(settings, backend):
    from pushgateway.backends import get_backend

    settings.PUSHGATEWAY = {**backend, "OPTIONS": {**backend.get("OPTIONS", {}), **LIMITS}}
    assert [m for m in check_settings() if m.is_serious()] == []
    assert get_backend().limits._asdict() == LIMITS


@pytest.mark.parametrize(
    ("limits", "text"),
    [
        ({"MAX_DATA_BYTES": 0}, "MAX_DATA_BYTES must be at least 1, not 0"),
        ({"MAX_DATA_BYTES": "4k"}, "MAX_DATA_BYTES must be a whole number, not '4k'"),
        ({"SUBSCRIBE_BURST": 2.5}, "SUBSCRIBE_BURST must be a whole number, not 2.5"),
        ({"SUBSCRIBE_RATE": 0}, "SUBSCRIBE_RATE must be positive, not 0"),
        ({"SUBSCRIBE_RATE": True}, "SUBSCRIBE_RATE must be a number, not True"),
        ({"SUBSCRIBE_RATE": float("nan")}, "SUBSCRIBE_RATE must be positive, not nan"),
        ({"MAX_CHANNELS": None}, "MAX_CHANNELS must be a whole number, not None"),
        ({"ADDRESS_JOIN_RATE": -1}, "ADDRESS_JOIN_RATE must be positive, not -1"),
        ({"ADDRESS_JOIN_BURST": 0}, "ADDRESS_JOIN_BURST must be at least 1, not 0"),
        ({"MAX_CONNECTIONS_PER_ADDRESS": 0}, "MAX_CONNECTIONS_PER_ADDRESS must be at least 1"),
        ({"DRAIN_SECONDS": -1}, "DRAIN_SECONDS must be seconds >= 0"),
        ({"DRAIN_SECONDS": "5"}, "DRAIN_SECONDS must be seconds >= 0"),
        ({"WATCH_TIMEOUT": 0}, "WATCH_TIMEOUT must be seconds > 0, not 0"),
        ({"WATCH_TIMEOUT": float("inf")}, "WATCH_TIMEOUT must be seconds > 0, not inf"),
    ],
)
def test_bad_limits_are_reported_and_refused(settings, limits, text):
    from pushgateway.backends.dummy import DummyBackend

    [(check_id, message)] = ids(
        {"BACKEND": "pushgateway.backends.dummy.DummyBackend", "OPTIONS": limits}, settings
    )
    assert check_id == "pushgateway.E004" and text in message
    with pytest.raises(ValueError, match=text):
        DummyBackend(**limits)
