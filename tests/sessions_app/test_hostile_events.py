"""Events whose fields have the wrong JSON type are refused with a code at every door, and
nothing is written; the socket that sent one keeps working."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from sessions_app.models import Entry
from tests.sessions_app.conftest import connect

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async

# A field that takes one of a few names (an outcome, a role, an action) sent as a list or an
# object: an unhashable value answered 500 (TypeError in the check of the choice).
WRONG_CHOICES = [
    {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": []}},
    {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": {"a": 1}}},
    {"type": "TEXT_MESSAGE_START", "message": "m1", "data": {"role": ["user"]}},
    {"type": "TEXT_MESSAGE_CHUNK", "message": "m1", "data": {"role": {}}},
    {"type": "CONTROL_ACK", "run": "r1", "data": {"action": ["cancel"]}},
    {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": 1}},
]


@pytest.mark.parametrize("event", WRONG_CHOICES)
def test_rest_refuses_a_choice_of_the_wrong_type_with_a_code(alice, session, event):
    client = Client()
    client.force_login(alice)
    body = json.dumps({"events": [event]})
    answer = client.post("/api/sessions/chat-1/events", body, content_type="application/json")
    assert (answer.status_code, answer.json()["code"]) == (400, "bad_event")
    assert not Entry.objects.filter(session=session).exists()


async def test_a_socket_refuses_a_choice_of_the_wrong_type_and_keeps_working(alice, session):
    async with connect(alice) as browser:
        for event in WRONG_CHOICES:
            refused = await browser.publish("chat-1", [event])
            assert (refused["type"], refused["code"]) == ("error", "bad_event")
        ok = {"type": "TEXT_MESSAGE_START", "message": "m1", "data": {"role": "user"}}
        assert (await browser.publish("chat-1", [ok]))["type"] == "ack"
    assert await db(Entry.objects.filter(session=session).count)() == 1


async def test_a_rating_of_the_wrong_type_is_refused_with_a_code_over_the_socket(alice, session):
    """The WebSocket's feedback op takes the rating as sent: a list answered an 'internal'
    error (TypeError in the check), where REST's schema refuses it."""
    async with connect(alice) as browser:
        for rating in (["up"], {"up": 1}, 1, None):
            frame = {"message": "a-1", "rating": rating}
            refused = await browser.request("feedback", session="chat-1", **frame)
            assert (refused["type"], refused["code"]) == ("error", "bad_request")
        assert (await browser.request("ping"))["type"] == "pong"
    assert not await db(Entry.objects.filter(session=session).exists)()
