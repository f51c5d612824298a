"""What travels through a channel layer: group names, and the one event both publishers send."""

import json

from channels.layers import InMemoryChannelLayer

from pushgateway import protocol
from pushgateway.backends.channels import layer_event
from pushgateway.backends.pubsub import ADVANCE_AND_PUBLISH_LUA
from pushgateway.layer import EVENT_FIELDS, EVENT_TYPE, group_name
from pushgateway.message import Message
from pushgateway.protocol import Position


def test_group_names_fit_channel_layers():
    layer = InMemoryChannelLayer()
    assert group_name("comments-7") == "pushgateway.comments-7"
    long_a, long_b = "a" * 100, "a" * 99 + "b"
    assert group_name(long_a) != group_name(long_b)
    for name in ("comments-7", long_a, "x" * 100):
        assert layer.require_valid_group_name(group_name(name))


def test_no_plain_channel_name_maps_to_a_hashed_group():
    # A long private name is hashed; a public channel spelt like the hash must not share its
    # group (it would read the private channel's hints).
    private = "private-" + "x" * 92
    hashed = group_name(private)
    assert hashed.startswith("pushgateway-sha1.")
    lookalike = hashed.removeprefix("pushgateway-sha1.")
    for spelling in (f"sha1.{lookalike}", f"-sha1.{lookalike}", hashed):
        if not protocol.channel_error(spelling):
            assert group_name(spelling) != hashed


def test_the_event_has_the_fields_the_hub_reads():
    message = Message("comments-7", {"pk": "1"}, id="m1")
    event = layer_event(message, Position("e1", 3))
    assert tuple(event) == EVENT_FIELDS
    assert event["type"] == EVENT_TYPE and event["channel"] == "comments-7"
    assert (event["epoch"], event["seq"]) == ("e1", 3)
    assert json.loads(event["frame"])["position"] == {"epoch": "e1", "seq": 3}


def test_the_redis_script_builds_the_event_and_the_position_from_the_python_definitions():
    # The Lua publisher writes no field name or format of its own (tests/integration/
    # test_backends.py checks what it publishes on a real Redis).
    for field in EVENT_FIELDS:
        assert f"{field} = " in ADVANCE_AND_PUBLISH_LUA
    assert json.dumps(protocol.POSITION_FORMAT) in ADVANCE_AND_PUBLISH_LUA
    assert json.dumps(protocol.POSITIONED_FORMAT) in ADVANCE_AND_PUBLISH_LUA
    assert '"position"' not in ADVANCE_AND_PUBLISH_LUA.replace(
        json.dumps(protocol.POSITIONED_FORMAT), ""
    )


def test_positions_in_frames_are_json_python_and_lua_can_both_write():
    head = protocol.message_head("a", "m1", {"x": 1})
    frame = protocol.with_position(head, Position("0f3a", 2**40))
    assert json.loads(frame)["position"] == {"epoch": "0f3a", "seq": 2**40}
    assert json.loads(protocol.with_position(head, None))["position"] is None
