"""Self-echo: hints carry the id of the page whose request caused them."""

import hashlib
import json

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

import pushgateway
from pushgateway.middleware import ClientIdMiddleware, client_tag
from pushgateway.protocol import Position

pytestmark = pytest.mark.matrix  # depends on the Python or Django version


def publishing_view(request):
    pushgateway.publish("comments-1", {"pk": "1"})
    return HttpResponse("ok")


@pytest.mark.parametrize(
    ("request_kwargs", "client"),
    [
        ({"headers": {"X-PushGateway-Client": "a1b2c3"}}, client_tag("a1b2c3")),
        ({"data": {"pushgateway_client": "f00d"}}, client_tag("f00d")),  # a form's field
        ({}, None),
        ({"headers": {"X-PushGateway-Client": "not valid!"}}, None),
        ({"headers": {"X-PushGateway-Client": "x" * 65}}, None),
    ],
)
def test_a_request_that_says_its_page_marks_the_hints_it_causes(outbox, request_kwargs, client):
    request = RequestFactory().post("/comments/", **request_kwargs)
    ClientIdMiddleware(publishing_view)(request)
    [message] = outbox
    assert message.client == client
    frame = json.loads(message.frame(Position("e", 1)))
    assert frame.get("client") == client


def test_hints_published_outside_a_request_carry_no_client(outbox):
    pushgateway.publish("comments-1")
    assert outbox[0].client is None


async def test_the_middleware_works_in_async_views_too(outbox):
    async def view(request):
        await pushgateway.apublish("comments-1")
        return HttpResponse("ok")

    request = RequestFactory().post("/", headers={"X-PushGateway-Client": "async1"})
    await ClientIdMiddleware(view)(request)
    assert outbox[0].client == client_tag("async1")


def test_hints_carry_a_tag_of_the_id_that_replaying_it_cannot_produce(outbox):
    # An attacker reads the victim's tag off a public hint and sends it as their own id: the
    # server tags it again, so the victim's page does not take the attacker's edit for its own.
    victim = "5f0c3e2a9b1d47e8a6c2f0b3"
    request = RequestFactory().post("/", headers={"X-PushGateway-Client": victim})
    ClientIdMiddleware(publishing_view)(request)
    seen = json.loads(outbox[0].frame(Position("e", 1)))["client"]
    assert victim not in seen
    assert seen == hashlib.sha256(victim.encode()).hexdigest()[:32]
    request = RequestFactory().post("/", headers={"X-PushGateway-Client": seen})
    ClientIdMiddleware(publishing_view)(request)
    assert outbox[1].client != seen


def test_the_form_field_tag_renders_the_hidden_input():
    from django.template import Context, Template

    html = Template("{% load pushgateway %}{% pushgateway_client_field %}").render(Context())
    assert html == '<input type="hidden" name="pushgateway_client" value="">'
