"""Feedback on the log: a user rates an assistant message over REST and WebSocket; every
device sees the rating in the snapshot, a later rating by the same user replaces the earlier,
and the server, not the caller, says who rated."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from sessions_app import log, services
from sessions_app.models import Entry
from tests.sessions_app.conftest import add_member, connect

pytestmark = pytest.mark.django_db(transaction=True)
BASE = "/api/sessions"


def answer(session, message="a1", text="Paris is the capital of France."):
    events = [
        {"type": "RUN_STARTED", "run": "r1", "agent": "helper"},
        {"type": "TEXT_MESSAGE_START", "message": "u1", "data": {"role": "user"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": "u1", "data": {"delta": "Capital of France?"}},
        {"type": "TEXT_MESSAGE_END", "message": "u1"},
        {"type": "TEXT_MESSAGE_START", "message": message, "run": "r1",
         "data": {"role": "assistant"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": message, "run": "r1", "data": {"delta": text}},
        {"type": "TEXT_MESSAGE_END", "message": message, "run": "r1"},
        {"type": "RUN_FINISHED", "run": "r1"},
    ]  # fmt: skip
    log.append_sync(services.request(session.pk, events))


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def rate(client, body, name="chat-1"):
    return client.post(f"{BASE}/{name}/feedback", json.dumps(body), content_type="application/json")


def rated(client, message="a1"):
    state = client.get(f"{BASE}/chat-1/snapshot").json()["state"]
    return next(m for m in state["messages"] if m["id"] == message).get("feedback")


def test_a_rating_shows_for_another_device_and_a_later_one_replaces_it(session, alice, bob):
    add_member(session, bob)
    answer(session)
    mine, other = logged_in(alice), logged_in(bob)
    first = rate(mine, {"message": "a1", "rating": "down", "comment": "wrong city?"})
    assert first.status_code == 200 and first.json()["message"] == "a1"
    assert rated(other) == {"alice": {"rating": "down", "comment": "wrong city?",
                                      "time": rated(other)["alice"]["time"]}}  # fmt: skip
    assert rate(mine, {"message": "a1", "rating": "up"}).status_code == 200
    assert (
        rate(other, {"message": "a1", "rating": "down", "correction": "Paris."}).status_code == 200
    )
    seen = rated(mine)
    assert seen["alice"]["rating"] == "up" and "comment" not in seen["alice"]
    assert seen["bob"]["rating"] == "down" and seen["bob"]["correction"] == "Paris."


def test_the_server_sets_who_rated_and_a_client_cannot_publish_feedback(session, alice):
    answer(session)
    client = logged_in(alice)
    forged = rate(client, {"message": "a1", "rating": "up", "user": "mallory"})
    assert forged.status_code == 200  # the extra field is ignored: the user is the credential's
    assert set(rated(client)) == {"alice"}
    event = {"type": "CUSTOM", "message": "a1", "data": {"name": "sessions.FEEDBACK",
             "value": {"message": "a1", "rating": "down", "user": "bob"}}}  # fmt: skip
    before = Entry.objects.filter(session=session).count()
    published = client.post(f"{BASE}/chat-1/events", json.dumps({"events": [event]}),
                            content_type="application/json")  # fmt: skip
    assert (published.status_code, published.json()["code"]) == (400, "bad_event")
    assert Entry.objects.filter(session=session).count() == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"message": "nope", "rating": "up"}, 404, "not_found"),
        ({"message": "u1", "rating": "up"}, 400, "bad_request"),  # a user message
        ({"message": "a1", "rating": "meh"}, 422, "invalid_input"),
        ({"message": "a1", "rating": "up", "comment": "x" * 2001}, 422, "invalid_input"),
    ],
)
def test_bad_ratings_are_refused_with_a_code_and_write_nothing(session, alice, body, status, code):
    answer(session)
    before = Entry.objects.filter(session=session).count()
    reply = rate(logged_in(alice), body)
    assert (reply.status_code, reply.json()["code"]) == (status, code)
    assert Entry.objects.filter(session=session).count() == before


async def test_the_websocket_op_rates_and_every_subscriber_sees_the_event(session, alice, bob):
    await database_sync_to_async(add_member)(session, bob)
    await database_sync_to_async(answer)(session)
    async with connect(alice) as phone, connect(bob) as laptop:
        _, caught_up = await laptop.subscribe("chat-1")
        assert caught_up["type"] == "caught_up"
        ack = await phone.request("feedback", session="chat-1", message="a1", rating="up",
                                  comment="clear")  # fmt: skip
        assert ack["type"] == "ack" and ack["message"] == "a1" and len(ack["offsets"]) == 1
        (event,) = await laptop.events(1)
        assert event["data"]["value"] == {"message": "a1", "rating": "up", "comment": "clear",
                                          "user": "alice"}  # fmt: skip
        refused = await phone.request("feedback", session="chat-1", message="u1", rating="up")
        assert refused["type"] == "error" and refused["reason"] == "not_assistant"
        absent = await phone.request("feedback", session="chat-1", message="zz", rating="up")
        assert absent["code"] == "not_found"


async def test_a_rating_re_sent_by_the_sdk_after_a_reconnect_lands_once(session, alice):
    await database_sync_to_async(answer)(session)
    frame = {"session": "chat-1", "message": "a1", "rating": "down", "correction": "Paris.",
             "producer": {"id": "phone-1", "epoch": 0, "seq": 0}}  # fmt: skip
    async with connect(alice) as phone:
        first = await phone.request("feedback", **frame)
    async with connect(alice) as phone:  # the ack was lost with the socket: sent again
        again = await phone.request("feedback", **frame)
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    count = database_sync_to_async(
        lambda: Entry.objects.filter(session=session, type="CUSTOM").count()
    )
    assert await count() == 1
