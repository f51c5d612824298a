"""Private by choice: private registrations, tokens that expire and rotate, Grip-Sig keys."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core import signing
from django.test import override_settings

import pushgateway
from channels_app import hub as hub_module
from channels_app.gripsig import verification_key, verify_grip_sig
from channels_app.hub import running_hub
from demo.models import Comment, Event
from pushgateway.registry import is_registered
from pushgateway.tokens import DEFAULT_TOKEN_MAX_AGE, check_token
from tests.support.hints import registered_as
from tests.support.sockets import connect, receive, send, subscribe

pytestmark = pytest.mark.django_db(transaction=True)

LOCMEM = "pushgateway.backends.locmem.LocMemBackend"


@pytest.fixture
def private_comments():
    """demo.Comment registered private for the test, then as the demo has it."""
    pushgateway.unregister(Comment)
    pushgateway.register(Comment, channels=lambda c: [f"comments-{c.event_id}"], private=True)
    yield Comment
    if is_registered(Comment):
        pushgateway.unregister(Comment)
    pushgateway.register(
        Comment, channels=lambda c: [f"comments-{c.event_id}", "events"], private=False
    )


def test_a_private_model_publishes_only_on_private_channels(outbox, private_comments):
    event = Event.objects.create(title="Board meeting")
    outbox.clear()
    comment = Comment.objects.create(event=event, author="a", body="salaries")
    assert [m.channel for m in outbox] == [
        f"private-demo.comment.{comment.pk}",
        f"private-comments-{event.pk}",
    ]
    assert pushgateway.channel_for(comment) == f"private-demo.comment.{comment.pk}"
    assert pushgateway.channel_for(event) == f"demo.event.{event.pk}"


def test_the_project_default_makes_every_registration_private(outbox):
    # The demo says private=False; a model that says nothing:
    private = {"BACKEND": LOCMEM, "OPTIONS": {"PRIVATE": True}}
    with (
        registered_as(Event, channels=lambda event: ["events"]),
        override_settings(PUSHGATEWAY=private),
    ):
        pushgateway.outbox.clear()
        event = Event.objects.create(title="Private by default")
        assert [m.channel for m in pushgateway.outbox] == [
            f"private-demo.event.{event.pk}",
            "private-events",
        ]


async def test_a_private_object_channel_needs_the_token_the_view_rendered():
    channel = "private-demo.invoice.17"
    socket = await connect()
    refused = await send(socket, {"type": "subscribe", "channel": channel})
    assert refused["code"] == "forbidden"
    token = pushgateway.make_token(channel)
    ok = await send(socket, {"type": "subscribe", "channel": channel, "token": token})
    assert ok["type"] == "subscribed"
    await socket.disconnect()


@pytest.fixture
def later(monkeypatch):
    """Move Django's signing clock forward by some seconds (tokens made before age)."""

    def later(seconds):  # further each time: time.time is the one patched
        now = time.time() + seconds
        monkeypatch.setattr(signing.time, "time", lambda: now)

    return later


def test_tokens_expire_after_token_max_age(later):
    token = pushgateway.make_token("private-x")
    assert check_token("private-x", token)
    with override_settings(PUSHGATEWAY={"BACKEND": LOCMEM, "OPTIONS": {"TOKEN_MAX_AGE": 60}}):
        later(50)  # tokens count whole seconds: a margin for that and for a slow machine
        assert check_token("private-x", token)
        later(11)
        assert not check_token("private-x", token)
    assert check_token("private-x", token)  # the default: an hour
    later(DEFAULT_TOKEN_MAX_AGE + 1)
    assert not check_token("private-x", token)
    never = {"BACKEND": LOCMEM, "OPTIONS": {"TOKEN_MAX_AGE": None}}
    with override_settings(PUSHGATEWAY=never):
        assert check_token("private-x", token)  # None: no expiry
    assert not check_token("private-y", pushgateway.make_token("private-x"))  # one channel


def test_positions_view_refuses_an_expired_token(client, later):
    token = pushgateway.make_token("private-x")
    with override_settings(PUSHGATEWAY={"BACKEND": LOCMEM, "OPTIONS": {"TOKEN_MAX_AGE": 60}}):
        later(61)
        body = client.get(f"/pushgateway/positions/?c=private-x:{token}").json()
    assert body["errors"] == {"private-x": "forbidden"}


async def live_private_subscription(channel="private-inbox-3"):
    """A socket subscribed to `channel` with a fresh token and to the public "news"."""
    socket = await connect()
    await subscribe(socket, channel, token=pushgateway.make_token(channel))
    await subscribe(socket, "news")
    return socket


async def assert_ended(socket, channel="private-inbox-3"):
    """`channel`'s subscription ended with `forbidden`; its hints stop, the others go on."""
    ended = await receive(socket)
    assert (ended["type"], ended["code"], ended["channel"]) == ("error", "forbidden", channel)
    await pushgateway.apublish(channel, {"pk": "secret"})
    await pushgateway.apublish("news", {"pk": "1"})
    after = await receive(socket)
    assert (after["type"], after["channel"]) == ("message", "news")
    await socket.disconnect()


async def test_an_expired_token_ends_its_live_subscription_within_the_verify_interval(
    monkeypatch, later
):
    monkeypatch.setattr(hub_module, "VERIFY_SECONDS", 0.2)
    socket = await live_private_subscription()
    later(DEFAULT_TOKEN_MAX_AGE + 1)
    await assert_ended(socket)  # the hub's own periodic check, no call from the test


async def test_dropping_a_key_from_the_fallbacks_ends_live_subscriptions(settings):
    settings.SECRET_KEY = "old-key-" + "x" * 50
    socket = await live_private_subscription()
    settings.SECRET_KEY = "new-key-" + "y" * 50
    settings.SECRET_KEY_FALLBACKS = ["old-key-" + "x" * 50]
    assert await running_hub().recheck_tokens() == 1
    await pushgateway.apublish("news", {"pk": "0"})
    assert (await receive(socket))["channel"] == "news"  # still subscribed, both channels
    settings.SECRET_KEY_FALLBACKS = []
    await running_hub().recheck_tokens()
    await assert_ended(socket)


async def test_a_fresh_token_sent_again_keeps_a_subscription_past_the_old_ones_age(later):
    socket = await live_private_subscription()
    later(DEFAULT_TOKEN_MAX_AGE - 10)
    fresh = pushgateway.make_token("private-inbox-3")
    await subscribe(socket, "private-inbox-3", token=fresh)
    later(DEFAULT_TOKEN_MAX_AGE + 10)
    await running_hub().recheck_tokens()
    await pushgateway.apublish("private-inbox-3", {"pk": "1"})
    assert (await receive(socket))["channel"] == "private-inbox-3"
    await socket.disconnect()


async def test_a_public_channel_spelt_like_a_hashed_group_cannot_touch_a_private_ones():
    # A private name too long for a layer group is carried by its SHA-1. A public channel
    # spelt like that hash used to share the group: its last subscriber leaving took the
    # group, and with it the private channel's hints, away from the whole process (the
    # hub's position check then healed the loss with a resync, seconds later).
    private = "private-" + "s" * 92
    lookalike = "sha1." + hashlib.sha1(private.encode()).hexdigest()
    victim = await connect()
    await subscribe(victim, private, token=pushgateway.make_token(private))
    attacker = await connect()
    await subscribe(attacker, lookalike)
    await send(attacker, {"type": "unsubscribe", "channel": lookalike})
    await running_hub().unsubscribe(lookalike, attacker)  # once the hub left its group
    await pushgateway.apublish(private, {"pk": "1"})
    delivered = await receive(victim)
    assert (delivered["type"], delivered["channel"]) == ("message", private)
    assert await attacker.receive_nothing(timeout=0.2)
    await victim.disconnect()
    await attacker.disconnect()


def test_key_rotation_the_django_way_keeps_tokens_until_the_old_key_is_dropped(settings):
    settings.SECRET_KEY = "old-key-" + "x" * 50
    token = pushgateway.make_token("private-x")
    settings.SECRET_KEY = "new-key-" + "y" * 50
    settings.SECRET_KEY_FALLBACKS = ["old-key-" + "x" * 50]
    assert check_token("private-x", token)  # pages open during the rotation reconnect
    settings.SECRET_KEY_FALLBACKS = []
    assert not check_token("private-x", token)  # dropping the old key revokes its tokens


def test_a_token_with_a_lone_surrogate_is_refused_not_a_crash():
    assert not check_token("private-x", "private-x:\ud800:abc")


# Grip-Sig: the algorithm follows the key, so a public key can never be used as an HMAC secret.


def grip(settings, url):
    settings.PUSHGATEWAY = {
        "BACKEND": "pushgateway.backends.fanout.FanoutBackend",
        "OPTIONS": {"GRIP_URL": url},
    }


def public_pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def claims(**extra):
    return {"iss": "fastly:abc", "exp": int(time.time()) + 60, **extra}


@pytest.mark.parametrize(
    ("make_key", "algorithm"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
    ],
)
def test_a_public_verify_key_accepts_only_its_own_algorithm(settings, make_key, algorithm):
    private_key = make_key()
    pem = public_pem(private_key)
    url = (
        "https://api.fastly.com/service/abc?key=token&verify-iss=fastly:abc"
        f"&verify-key=base64:{base64.b64encode(pem).decode()}"
    )
    grip(settings, url)
    verification_key.cache_clear()
    assert verification_key(url)[1] == [algorithm]
    assert verify_grip_sig(jwt.encode(claims(), private_key, algorithm=algorithm))
    # The classic confusion: "signed" with HMAC, using the public key (no secret) as the key.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    mac = hmac.new(pem, header + b"." + body, hashlib.sha256).digest()
    forged = b".".join([header, body, base64.urlsafe_b64encode(mac).rstrip(b"=")]).decode()
    assert not verify_grip_sig(forged)


def test_a_shared_secret_accepts_only_hs256(settings):
    url = "http://127.0.0.1:5561?key=pushpin-sig-key-long-enough-for-hs256&verify-iss=pushpin"
    grip(settings, url)
    verification_key.cache_clear()
    assert verification_key(url)[1] == ["HS256"]
    token = jwt.encode(
        {"iss": "pushpin", "exp": int(time.time()) + 60},
        "pushpin-sig-key-long-enough-for-hs256",
        algorithm="HS256",
    )
    assert verify_grip_sig(token)
    unsigned = jwt.encode({"iss": "pushpin", "exp": int(time.time()) + 60}, None, algorithm="none")
    assert not verify_grip_sig(unsigned)
