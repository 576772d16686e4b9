"""Frames as the agent SDK sends them: a re-sent writing frame lands once, and every refusal
answers its request."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from sessions_app.models import Entry, Session
from tests.sessions_app.conftest import connect

db = database_sync_to_async


def kinds(session):
    return db(lambda: [e.type for e in Entry.objects.filter(session=session).order_by("seq")])()


def producer(seq, pid="phone-1"):
    return {"id": pid, "epoch": 0, "seq": seq}


@pytest.mark.django_db(transaction=True)
async def test_a_re_sent_user_message_lands_once_and_its_repeat_names_the_same_message(
    alice, session
):
    frame = {"session": "chat-1", "text": "Hello", "message": "u-mine", "producer": producer(0)}
    async with connect(alice) as phone:
        first = await phone.request("send_message", **frame)
    async with connect(alice) as phone:  # the ack was lost with the socket: sent again
        again = await phone.request("send_message", **frame)
    assert first["type"] == again["type"] == "ack"
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert first["message"] == again["message"] == "u-mine"
    assert again["offsets"] == first["offsets"]
    assert await kinds(session) == [
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
    ]


@pytest.mark.django_db(transaction=True)
async def test_a_re_sent_cancel_whose_run_ended_meanwhile_is_answered_like_the_first(
    alice, session
):
    async with connect(alice) as agent, connect(alice) as phone:
        await agent.publish("chat-1", [{"type": "RUN_STARTED", "run": "r1"}])
        cancel = {"session": "chat-1", "run": "r1", "producer": producer(0)}
        first = await phone.request("cancel", **cancel)
        ended = await agent.publish("chat-1", [
            {"type": "CONTROL_ACK", "run": "r1", "data": {"action": "cancel", "control": first["offsets"][0]}},
            {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": "cancelled"}}])  # fmt: skip
        assert ended["type"] == "ack"
        again = await phone.request("cancel", **cancel)
        assert again["type"] == "ack" and again["duplicate"] is True, again
        # A new cancel (next seq) of the ended run is still refused.
        later = await phone.request("cancel", **{**cancel, "producer": producer(1)})
        assert later["code"] == "run_ended"
    assert (await kinds(session)).count("CANCEL") == 1


@pytest.mark.django_db(transaction=True)
async def test_re_sent_steer_and_interrupt_land_once(alice, session):
    async with connect(alice) as agent, connect(alice) as phone:
        await agent.publish("chat-1", [{"type": "RUN_STARTED", "run": "r1"}])
        steer = {"session": "chat-1", "run": "r1", "text": "shorter", "producer": producer(0)}
        interrupt = {"session": "chat-1", "run": "r1", "text": "stop", "message": "u-int",
                     "producer": producer(1)}  # fmt: skip
        for _ in range(2):
            assert (await phone.request("steer", **steer))["type"] == "ack"
            reply = await phone.request("interrupt", **interrupt)
            assert reply["type"] == "ack" and reply["message"] == "u-int"
    assert (await kinds(session))[1:] == [
        "STEER", "CANCEL", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END",
    ]  # fmt: skip


@pytest.mark.django_db(transaction=True)
async def test_a_message_id_that_is_not_an_id_is_refused_and_nothing_is_written(alice, session):
    async with connect(alice) as phone:
        reply = await phone.request("send_message", session="chat-1", text="hi", message=["x"])
    assert reply["code"] == "bad_event"
    assert await kinds(session) == []


@pytest.mark.django_db(transaction=True)
@override_settings(SESSIONS_APP={"MAX_SUBSCRIPTIONS_PER_CONNECTION": 1})
async def test_a_subscription_over_the_limit_is_refused_in_answer_to_its_request(alice, session):
    await db(Session.objects.create)(name="chat-2", owner=alice)
    async with connect(alice) as device:
        await device.subscribe("chat-1")
        await device.send({"op": "subscribe", "id": 77, "session": "chat-2"})
        refused = await device.recv_type("error")
    assert (refused["id"], refused["code"], refused["limit"]) == (
        77,
        "limit_exceeded",
        "subscriptions",
    )
