"""Live control over WebSocket: cancel, steer, interrupt; a disconnect never cancels."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings
from django.utils import timezone

from sessions_app.models import Entry, Run
from tests.sessions_app.conftest import connect

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


def start(run="r1", message="m1"):
    return [
        {"type": "RUN_STARTED", "run": run, "agent": "writer"},
        {
            "type": "TEXT_MESSAGE_START",
            "run": run,
            "message": message,
            "data": {"role": "assistant"},
        },
    ]


def delta(text, run="r1", message="m1"):
    return [
        {"type": "TEXT_MESSAGE_CONTENT", "run": run, "message": message, "data": {"delta": text}}
    ]


async def wait_for_event(client, event_type, timeout=5):
    while True:
        for event in (await client.recv_type("events", timeout=timeout))["events"]:
            if event["type"] == event_type:
                return event


async def run_status(run_id="r1"):
    return await db(lambda: Run.objects.get(run_id=run_id).status)()


async def test_a_cancel_from_another_device_reaches_the_agent_and_everyone_sees_the_ack(
    alice, session
):
    async with connect(alice) as agent, connect(alice) as phone, connect(alice) as laptop:
        await agent.subscribe("chat-1")
        await agent.publish("chat-1", start() + delta("Once upon"))
        await phone.subscribe("chat-1")
        await laptop.subscribe("chat-1")
        ack = await laptop.request("cancel", session="chat-1", run="r1")
        assert ack["type"] == "ack"
        assert await run_status() == "cancelling"
        cancel = await wait_for_event(agent, "CANCEL")
        assert cancel["run"] == "r1" and cancel["offset"] == ack["offsets"][0]
        done = await agent.publish(
            "chat-1",
            [{"type": "CONTROL_ACK", "run": "r1", "data": {"action": "cancel", "control": cancel["offset"]}},
             {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": "cancelled"}}],
        )  # fmt: skip
        assert done["type"] == "ack"
        for device in (phone, laptop):
            finished = await wait_for_event(device, "RUN_FINISHED")
            assert finished["data"]["outcome"] == "cancelled"
        late = await agent.publish("chat-1", delta(" a time"))
        assert late["code"] == "run_ended" and late["status"] == "cancelled"
    assert await run_status() == "cancelled"
    async with connect(alice) as newcomer:
        frames, _ = await newcomer.subscribe("chat-1", after="snapshot")
        state = frames[0]["state"]
        assert state["messages"][0]["text"] == "Once upon"
        assert state["messages"][0]["status"] == "cancelled"
        assert state["runs"][0]["status"] == "cancelled"


@override_settings(SESSIONS_APP={"CANCEL_ACK_TIMEOUT": 1})
async def test_an_unacknowledged_cancel_times_out_and_the_run_refuses_appends(alice, session):
    async with connect(alice) as agent, connect(alice) as phone:
        await agent.publish("chat-1", start() + delta("Partial"))
        await phone.subscribe("chat-1")
        await phone.request("cancel", session="chat-1")  # every active run
        finished = await wait_for_event(phone, "RUN_FINISHED", timeout=20)
        assert finished["data"] == {"outcome": "cancelled", "reason": "timeout"}
        refused = await agent.publish("chat-1", delta("more"))
        assert refused["code"] == "run_ended"
    row = await db(Run.objects.get)(run_id="r1")
    assert (row.status, row.reason) == ("cancelled", "timeout")


async def test_steer_reaches_the_agent_in_order(alice, session):
    async with connect(alice) as agent, connect(alice) as phone:
        await agent.publish("chat-1", start())
        await agent.subscribe("chat-1", after="now")
        for text in ("shorter please", "in French", "and polite"):
            assert (await phone.request("steer", session="chat-1", run="r1", text=text))[
                "type"
            ] == "ack"
        steers = [(await wait_for_event(agent, "STEER"))["data"]["text"] for _ in range(3)]
        assert steers == ["shorter please", "in French", "and polite"]


async def test_control_of_a_run_that_ended_or_never_existed_is_refused(alice, session):
    async with connect(alice) as client:
        await client.publish("chat-1", start() + [{"type": "RUN_FINISHED", "run": "r1"}])
        assert (await client.request("steer", session="chat-1", run="r1", text="x"))[
            "code"
        ] == "run_ended"
        assert (await client.request("cancel", session="chat-1", run="r1"))["code"] == "run_ended"
        assert (await client.request("cancel", session="chat-1", run="nope"))["code"] == "not_found"
        assert (await client.request("steer", session="chat-1", text="x"))["code"] == "bad_request"
        restart = await client.publish("chat-1", [{"type": "RUN_STARTED", "run": "r1"}])
        assert restart["code"] == "run_exists"
    assert await db(Entry.objects.filter(session=session).count)() == 3


async def test_interrupt_cancels_and_sends_a_new_message_in_one_append(alice, session):
    async with connect(alice) as agent, connect(alice) as phone:
        await agent.publish("chat-1", start())
        reply = await phone.request(
            "interrupt", session="chat-1", run="r1", text="Actually, stop and do this"
        )
        assert (
            reply["type"] == "ack"
            and len(reply["offsets"]) == 4
            and reply["message"].startswith("u-")
        )
        _, caught_up = await agent.subscribe("chat-1", after="snapshot")
    events = await db(
        lambda: [e.type for e in Entry.objects.filter(session=session).order_by("seq")]
    )()
    assert events[-4:] == [
        "CANCEL",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
    ]
    assert await run_status() == "cancelling"


async def test_a_user_message_is_three_events_with_the_user_role(alice, session):
    async with connect(alice) as phone:
        reply = await phone.request("send_message", session="chat-1", text="Hello agent")
        assert len(reply["offsets"]) == 3
        frames, _ = await phone.subscribe("chat-1", after="snapshot")
    message = frames[0]["state"]["messages"][0]
    assert (message["role"], message["text"], message["status"]) == (
        "user",
        "Hello agent",
        "complete",
    )
    async with connect(alice) as phone:
        assert (await phone.request("send_message", session="chat-1", text="  "))[
            "code"
        ] == "bad_request"


async def test_closing_a_socket_never_cancels_the_run_and_the_device_resumes(alice, session):
    # The resume-cancel conflict: a dropped connection is not a stop.
    async with connect(alice) as agent:
        async with connect(alice) as phone:
            await agent.publish("chat-1", start() + delta("Hel"))
            events, caught_up = await phone.subscribe("chat-1")
            seen = caught_up["offset"]
        await agent.publish("chat-1", delta("lo") + [{"type": "TEXT_MESSAGE_END", "run": "r1", "message": "m1"},
                                                     {"type": "RUN_FINISHED", "run": "r1"}])  # fmt: skip
        assert await run_status() == "finished"
        async with connect(alice) as phone:
            rest, _ = await phone.subscribe("chat-1", after=seen)
    assert [e["type"] for e in rest] == ["TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_FINISHED"]
    assert (
        "".join(e["data"]["delta"] for e in events + rest if e["type"] == "TEXT_MESSAGE_CONTENT")
        == "Hello"
    )


async def test_sub_agents_start_child_runs_and_publish_themselves(alice, session):
    async with connect(alice) as boss, connect(alice) as helper:
        await boss.publish("chat-1", [{"type": "RUN_STARTED", "run": "boss"}])
        reply = await helper.publish(
            "chat-1",
            [
                {
                    "type": "RUN_STARTED",
                    "run": "research",
                    "agent": "researcher",
                    "data": {"parentRunId": "boss"},
                }
            ],
        )
        assert reply["type"] == "ack"
        orphan = await helper.publish(
            "chat-1", [{"type": "RUN_STARTED", "run": "x", "data": {"parentRunId": "nope"}}]
        )
        assert orphan["code"] == "bad_event"
    child = await db(Run.objects.select_related("parent").get)(run_id="research")
    assert child.parent.run_id == "boss" and child.agent == "researcher"


@override_settings(SESSIONS_APP={"AGENT_HEARTBEAT_TIMEOUT": None})  # nobody is lost yet
async def test_a_silent_agent_is_declared_lost_and_its_run_fails(alice, session):
    # Silence is dated, not waited for: with a real timeout of a second and heartbeats 0.4 s
    # apart, a starved test process that stalled for a second lost the live agent too.
    async with connect(alice) as agent, connect(alice) as phone:
        await agent.publish("chat-1", start("quiet") + start("alive", message="m2"))
        await phone.subscribe("chat-1")
        hour_ago = timezone.now() - timedelta(hours=1)  # both agents last spoke an hour ago ...
        await db(Run.objects.filter(session=session).update)(
            started_at=hour_ago, heartbeat_at=hour_ago
        )
        for _ in range(3):  # ... then one says it is alive; the other says nothing
            assert (await agent.request("heartbeat", session="chat-1", run="alive"))[
                "running"
            ] is True
        with override_settings(SESSIONS_APP={"AGENT_HEARTBEAT_TIMEOUT": 60}):
            lost = await wait_for_event(phone, "RUN_ERROR", timeout=20)
            assert (lost["run"], lost["data"]["code"]) == ("quiet", "agent_lost")
            assert (await agent.publish("chat-1", delta("late", run="quiet", message="m1")))[
                "code"
            ] == "run_ended"
    assert await run_status("quiet") == "failed"
    assert await run_status("alive") == "running"


async def test_a_cancel_whose_reason_is_not_text_is_refused_and_nothing_is_written(alice, session):
    async with connect(alice) as phone:
        await phone.publish("chat-1", start())
        before = await db(Entry.objects.count)()
        for reason in ({"why": "x"}, ["x"], 7):
            reply = await phone.request("cancel", session="chat-1", run="r1", reason=reason)
            assert (reply["type"], reply["code"]) == ("error", "bad_request")
        assert await db(Entry.objects.count)() == before
        assert await run_status() == "running"
        ok = await phone.request("cancel", session="chat-1", run="r1", reason="x" * 300)
        assert ok["type"] == "ack"
    stored = await db(lambda: Entry.objects.filter(type="CANCEL").get().body)()
    assert b'"reason":"' + b"x" * 200 + b'"' in bytes(stored)
