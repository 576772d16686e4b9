"""The AG-UI door: a POST starts a run and streams it, reconnect continues it, cancel stops it."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.test import AsyncClient, override_settings
from django.urls import include, path

from sessions_app.access import mint_token
from sessions_app.models import Run
from tests.sessions_app.doors.clients import (
    answer_when_asked,
    db,
    entries,
    publish,
    read_sse,
    run_events,
)

pytest.importorskip("ag_ui")

# Mounted here, so the tests run under a site that has not mounted the doors.
urlpatterns = [path("sessions/", include("sessions_app.doors.urls"))]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

URL = "/sessions/agui/"
JSON = "application/json"


async def auth(user, sessions=None) -> dict[str, str]:
    return {"Authorization": f"Bearer {await db(mint_token)(user, sessions)}"}


def run_input(thread="chat-1", mid="u1", text="Tell me a story", **extra):
    body = {"threadId": thread, "runId": "client-run", "protocolVersion": "1.0", "state": {},
            "messages": [{"id": mid, "role": "user", "content": text}], "tools": [],
            "context": [], "forwardedProps": {}}  # fmt: skip
    return json.dumps({**body, **extra})


def events_of(frames):
    return [json.loads(data) for _, data in frames]


async def test_a_post_sends_the_message_and_streams_the_agents_run(alice, session):
    agent = asyncio.create_task(answer_when_asked(session, run_events()))
    response = await AsyncClient().post(
        URL, run_input(), content_type=JSON, headers=await auth(alice)
    )
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    frames = await read_sse(response)
    await agent
    events = events_of(frames)
    assert [e["type"] for e in events] == [
        "RUN_STARTED", "TEXT_MESSAGE_START", *["TEXT_MESSAGE_CONTENT"] * 4, "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]  # fmt: skip
    assert events[0]["runId"] == "r1" and events[0]["threadId"] == "chat-1"
    assert events[-1]["outcome"] == {"type": "success"}
    assert "".join(e.get("delta", "") for e in events) == "Once upon a time"
    ids = [i for i, _ in frames]
    assert all(ids) and ids == sorted(ids) and len(set(ids)) == len(ids)
    stored = await entries(session)
    assert stored[:3] == [
        {"type": "TEXT_MESSAGE_START", "message": "u1", "data": {"role": "user"},
         "time": stored[0]["time"]},
        {"type": "TEXT_MESSAGE_CONTENT", "message": "u1", "data": {"delta": "Tell me a story"},
         "time": stored[0]["time"]},
        {"type": "TEXT_MESSAGE_END", "message": "u1", "time": stored[0]["time"]},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "invalid_input"),
        (json.dumps({"threadId": "chat-1"}), 400, "invalid_input"),
        (run_input(messages=[]), 400, "bad_request"),
        (run_input(messages=[{"id": "a", "role": "assistant", "content": "hi"}]), 400,
         "bad_request"),
        (run_input(thread="someone-elses"), 404, "not_found"),
        (run_input(text=""), 400, "bad_request"),
        (run_input(thread="chat\x00-1"), 400, "bad_request"),
    ],
)  # fmt: skip
async def test_bad_input_is_refused_with_a_code_and_nothing_is_written(
    alice, session, body, status, code
):
    response = await AsyncClient().post(URL, body, content_type=JSON, headers=await auth(alice))
    assert (response.status_code, json.loads(response.content)["code"]) == (status, code)
    assert await entries(session) == []


@pytest.mark.parametrize(
    "extra",
    [
        {"forwardedProps": {"note": "a\x00b"}},
        {"state": {"k\x00": 1}},
        {"context": [{"description": "\x00", "value": "v"}]},
        {"tools": [{"name": "t", "description": "\x00", "parameters": {}}]},
    ],
)
async def test_nul_in_what_the_frontend_forwards_is_refused_and_nothing_is_written(
    alice, session, extra
):
    """PostgreSQL's jsonb holds no NUL: the turn's input failed the whole group commit (a 500
    ``append failed``, and every other append in that commit failed with it)."""
    response = await AsyncClient().post(
        URL, run_input(**extra), content_type=JSON, headers=await auth(alice)
    )
    assert (response.status_code, json.loads(response.content)["code"]) == (400, "bad_request")
    assert await entries(session) == []


async def test_a_message_id_already_in_the_session_is_a_conflict(alice, session):
    await publish(
        session, [{"type": "TEXT_MESSAGE_START", "message": "u1", "data": {"role": "user"}}]
    )
    response = await AsyncClient().post(
        URL, run_input(), content_type=JSON, headers=await auth(alice)
    )
    assert response.status_code == 409
    assert json.loads(response.content)["code"] == "message_exists"
    assert len(await entries(session)) == 1


async def test_strangers_and_anonymous_callers_are_refused(alice, bob, session):
    client = AsyncClient()
    anonymous = await client.post(URL, run_input(), content_type=JSON)
    stranger = await client.post(URL, run_input(), content_type=JSON, headers=await auth(bob))
    forged = await client.post(
        URL, run_input(), content_type=JSON, headers={"Authorization": "Bearer nope"}
    )
    assert [anonymous.status_code, stranger.status_code, forged.status_code] == [401, 404, 401]
    assert json.loads(anonymous.content)["code"] == "unauthenticated"
    assert await entries(session) == []


async def test_a_logged_in_browser_needs_the_csrf_token_to_post(alice, session):
    client = AsyncClient(enforce_csrf_checks=True)
    await db(client.force_login)(alice)
    response = await client.post(URL, run_input(), content_type=JSON)
    assert response.status_code == 403
    assert json.loads(response.content)["code"] == "csrf_failed"
    assert await entries(session) == []


@override_settings(SESSIONS_APP={"DOORS_RUN_START_TIMEOUT": 0.3})
async def test_without_an_agent_the_stream_ends_with_an_error_and_the_message_stays(alice, session):
    response = await AsyncClient().post(
        URL, run_input(), content_type=JSON, headers=await auth(alice)
    )
    events = events_of(await read_sse(response))
    # A run is opened first (under the client's run id): a lone RUN_ERROR is not a valid stream.
    assert [e["type"] for e in events] == ["RUN_STARTED", "RUN_ERROR"]
    assert (events[0]["threadId"], events[0]["runId"]) == ("chat-1", "client-run")
    assert events[1]["code"] == "no_agent" and events[1]["message"]
    validate = pytest.importorskip("ag_ui_validate.pytest_plugin")
    validate.assert_valid_agui(events, max_warnings=0)  # AGUI001 flagged the lone RUN_ERROR
    assert [e["type"] for e in await entries(session)][-1] == "TEXT_MESSAGE_END"


async def test_closing_the_stream_does_not_cancel_the_run(alice, session):
    agent = asyncio.create_task(answer_when_asked(session, run_events(end=None)))
    response = await AsyncClient().post(
        URL, run_input(), content_type=JSON, headers=await auth(alice)
    )
    chunks = aiter(response.streaming_content)
    while b"TEXT_MESSAGE_CONTENT" not in await asyncio.wait_for(anext(chunks), 5):
        pass
    await chunks.aclose()  # the browser went away
    await agent
    assert not any(e["type"] == "CANCEL" for e in await entries(session))
    assert (await db(Run.objects.get)(run_id="r1")).status == "running"


# --- reconnect ---------------------------------------------------------------------------------


async def test_reconnecting_continues_the_run_after_the_last_event_id(alice, session):
    await publish(session, run_events(end=None, words=("Once ", "upon ")))  # offsets 1..4
    response = await AsyncClient().get(
        URL + "chat-1/connect?protocolVersion=1.0",
        headers={**await auth(alice), "Last-Event-ID": "0000000000000000_0000000000000003"},
    )
    assert response.status_code == 200
    rest = [
        {"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "message": "m1", "data": {"delta": "a time"}},
        {"type": "TEXT_MESSAGE_END", "run": "r1", "message": "m1"},
        {"type": "RUN_FINISHED", "run": "r1"},
    ]
    agent = asyncio.create_task(publish(session, rest))
    frames = await read_sse(response)
    await agent
    events = events_of(frames)
    assert [e["type"] for e in events] == [
        "RUN_STARTED", "MESSAGES_SNAPSHOT", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_FINISHED",
    ]  # fmt: skip
    assert events[1]["messages"] == [{"id": "m1", "role": "assistant", "content": "Once "}]
    assert frames[2][0] == "0000000000000000_0000000000000003"
    assert "".join(e.get("delta", "") for e in events[3:]) == "upon a time"


async def test_reconnecting_with_nothing_going_is_204(alice, session):
    client = AsyncClient()
    nothing = await client.get(URL + "chat-1/connect", headers=await auth(alice))
    await publish(session, run_events())
    ended = await client.get(
        URL + "chat-1/connect",
        headers={**await auth(alice), "Last-Event-ID": "0000000000000000_0000000000000008"},
    )
    assert [nothing.status_code, ended.status_code] == [204, 204]


async def test_a_bad_or_future_last_event_id_is_refused(alice, session):
    client = AsyncClient()
    bad = await client.get(
        URL + "chat-1/connect", headers={**await auth(alice), "Last-Event-ID": "yesterday"}
    )
    future = await client.get(
        URL + "chat-1/connect",
        headers={**await auth(alice), "Last-Event-ID": "0000000000000000_0000000000000099"},
    )
    assert [bad.status_code, future.status_code] == [400, 400]
    assert json.loads(bad.content)["code"] == "bad_offset"


# --- cancel --------------------------------------------------------------------------------


async def test_cancel_appends_a_cancel_for_the_run(alice, session):
    await publish(session, run_events(end=None))
    client = AsyncClient()
    response = await client.post(
        URL + "chat-1/cancel", {"runId": "r1"}, content_type=JSON, headers=await auth(alice)
    )
    assert response.status_code == 200 and json.loads(response.content)["cancelled"] == ["r1"]
    assert (await entries(session))[-1]["type"] == "CANCEL"
    assert (await db(Run.objects.get)(run_id="r1")).status == "cancelling"


async def test_cancel_answers_with_a_code_when_there_is_nothing_to_cancel(alice, session):
    client = AsyncClient()
    headers = await auth(alice)
    idle = await client.post(URL + "chat-1/cancel", content_type=JSON, headers=headers)
    unknown = await client.post(
        URL + "chat-1/cancel", {"runId": "nope"}, content_type=JSON, headers=headers
    )
    await publish(session, run_events())
    ended = await client.post(
        URL + "chat-1/cancel", {"runId": "r1"}, content_type=JSON, headers=headers
    )
    nul = await client.post(
        URL + "chat-1/cancel", {"runId": "r\x001"}, content_type=JSON, headers=headers
    )
    assert nul.status_code == 400
    codes = [json.loads(r.content)["code"] for r in (idle, unknown, ended)]
    assert [idle.status_code, unknown.status_code, ended.status_code] == [409, 404, 409]
    assert codes == ["not_running", "not_found", "run_ended"]
    assert not any(e["type"] == "CANCEL" for e in await entries(session))


async def test_a_cancelled_run_ends_the_stream_with_its_outcome_and_legacy_clients_get_run_error(
    alice, session
):
    cancelled = run_events(end="cancelled")
    for legacy in (False, True):
        run_id = f"r-{legacy}"
        events = [{**e, "run": run_id} for e in cancelled]
        agent = asyncio.create_task(answer_when_asked_after(session, events))
        body = run_input(mid=f"u-{legacy}")
        if legacy:
            body = json.dumps({k: v for k, v in json.loads(body).items() if k != "protocolVersion"})
        response = await AsyncClient().post(URL, body, content_type=JSON, headers=await auth(alice))
        out = events_of(await read_sse(response))
        await agent
        expected = (
            {"type": "RUN_ERROR", "message": "the run was cancelled", "code": "cancelled"}
            if legacy
            else {"type": "RUN_FINISHED", "threadId": "chat-1", "runId": run_id,
                  "outcome": {"type": "cancelled"}}
        )  # fmt: skip
        assert {k: v for k, v in out[-1].items() if k != "timestamp"} == expected


async def answer_when_asked_after(session, events):
    """Like answer_when_asked, but waits for a user message newer than any run so far."""
    for _ in range(500):
        stored = await entries(session)
        last_run = max((i for i, e in enumerate(stored) if e.get("run")), default=-1)
        if any(
            e["type"] == "TEXT_MESSAGE_END" and not e.get("run") for e in stored[last_run + 1 :]
        ):
            break
        await asyncio.sleep(0.01)
    for event in events:
        await publish(session, [event])


@pytest.mark.parametrize(
    "value",
    [{"DOORS_RUN_START_TIMEOUT": 0}, {"DOORS_KEEPALIVE_SECONDS": "15"},
     {"DOORS_KEEPALIVE_SECONDS": True}],
)  # fmt: skip
def test_the_doors_timeouts_must_be_positive_seconds(value, settings):
    from django.core.checks import run_checks

    settings.SESSIONS_APP = value
    found = [m for m in run_checks() if m.id == "sessions_app.E020"]
    assert len(found) == 1 and next(iter(value)) in found[0].msg
    settings.SESSIONS_APP = {"DOORS_RUN_START_TIMEOUT": 5, "DOORS_KEEPALIVE_SECONDS": 0.5}
    assert not [m for m in run_checks() if m.id.startswith("sessions_app.E02")]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("chat-1/cancel", "[" * 100_000, 400, "bad_request"),
        ("chat-1/cancel", "[" * (10 * 1024 * 1024), 413, "limit_exceeded"),
        ("", "[" * 100_000, 400, "invalid_input"),
        ("", " " * (10 * 1024 * 1024), 413, "limit_exceeded"),
    ],
)
async def test_deep_or_huge_bodies_get_a_json_4xx_and_write_nothing(
    alice, session, path, body, status, code
):
    await publish(session, run_events(end=None))
    before = await entries(session)
    response = await AsyncClient().post(
        URL + path, body, content_type=JSON, headers=await auth(alice)
    )
    assert response.status_code == status and response["Content-Type"] == JSON
    assert json.loads(response.content)["code"] == code
    assert await entries(session) == before


async def test_two_messages_in_flight_each_stream_the_run_that_answers_its_turn(alice, session):
    """Before turns, the second POST's stream took the first run that started after its message,
    which is the answer to the FIRST message when both are in flight: the streams crossed."""
    from sessions_app import dispatch
    from sessions_app.access import Actor

    headers = await auth(alice)
    first = asyncio.create_task(
        AsyncClient().post(URL, run_input(mid="u1", text="one"), content_type=JSON, headers=headers)
    )
    second = asyncio.create_task(
        AsyncClient().post(URL, run_input(mid="u2", text="two"), content_type=JSON, headers=headers)
    )
    for _ in range(500):  # both messages are in the log before any answer starts
        if sum(e["type"] == "TEXT_MESSAGE_END" for e in await entries(session)) == 2:
            break
        await asyncio.sleep(0.01)
    for _ in range(2):  # a worker answers the turns, oldest first, one at a time
        [claimed] = await db(dispatch.claim)(Actor(alice), ["assistant"], "w", 1)
        turn = claimed.turn
        events = run_events(run=turn.run_id, mid=f"a{turn.pk}", words=(claimed.text,))
        events[0]["data"] = {"turn": turn.pk}
        for event in events:
            await publish(session, [event])
    streams = [events_of(await read_sse(await task)) for task in (first, second)]
    answered = ["".join(e.get("delta", "") for e in stream) for stream in streams]
    assert answered == ["one", "two"]
    assert streams[0][0]["runId"] != streams[1][0]["runId"]
