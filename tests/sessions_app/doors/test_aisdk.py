"""The AI SDK door: chat streams the agent's run, resume replays a going run, stop cancels it."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.test import AsyncClient, override_settings
from django.urls import include, path

from sessions_app.access import mint_token
from tests.sessions_app.doors.clients import (
    answer_when_asked,
    db,
    entries,
    publish,
    read_sse,
    run_events,
)

pytest.importorskip("ag_ui")  # the doors' URLs import both doors

urlpatterns = [path("sessions/", include("sessions_app.doors.urls"))]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

URL = "/sessions/aisdk/chat"
JSON = "application/json"


async def auth(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {await db(mint_token)(user)}"}


def chat_body(chat="chat-1", mid="u1", text="Tell me a story", **extra):
    message = {"id": mid, "role": "user", "parts": [{"type": "text", "text": text}]}
    return json.dumps({"id": chat, "messages": [message], "trigger": "submit-message", **extra})


def chunks_of(frames):
    return [data if data == "[DONE]" else json.loads(data) for _, data in frames]


async def test_a_chat_post_streams_the_run_as_one_assistant_message(alice, session):
    agent = asyncio.create_task(answer_when_asked(session, run_events()))
    response = await AsyncClient().post(
        URL, chat_body(), content_type=JSON, headers=await auth(alice)
    )
    assert response.status_code == 200
    assert response["x-vercel-ai-ui-message-stream"] == "v1"
    assert response["Content-Type"] == "text/event-stream"
    chunks = chunks_of(await read_sse(response))
    await agent
    assert chunks[0] == {"type": "start", "messageId": "r1"}
    assert [c if isinstance(c, str) else c["type"] for c in chunks[-3:]] == [
        "finish-step", "finish", "[DONE]",
    ]  # fmt: skip
    assert "".join(c.get("delta", "") for c in chunks[:-1]) == "Once upon a time"
    stored = await entries(session)
    assert stored[1]["message"] == "u1" and stored[1]["data"]["delta"] == "Tell me a story"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("nope", "bad_request"),
        (json.dumps({"messages": []}), "bad_request"),
        (chat_body(trigger="regenerate-message"), "bad_request"),
        (json.dumps({"id": "chat-1", "messages": [{"id": "a", "role": "assistant", "parts": []}]}),
         "bad_request"),
        (chat_body(text=""), "bad_request"),
        (chat_body(chat="chat\x00-1"), "bad_request"),
    ],
)  # fmt: skip
async def test_bad_input_is_refused_with_a_code_and_nothing_is_written(alice, session, body, code):
    response = await AsyncClient().post(URL, body, content_type=JSON, headers=await auth(alice))
    assert response.status_code == 400 and json.loads(response.content)["code"] == code
    assert await entries(session) == []


async def test_an_unknown_chat_is_not_found_and_anonymous_callers_are_refused(alice, session):
    client = AsyncClient()
    unknown = await client.post(
        URL, chat_body(chat="x"), content_type=JSON, headers=await auth(alice)
    )
    anonymous = await client.post(URL, chat_body(), content_type=JSON)
    assert [unknown.status_code, anonymous.status_code] == [404, 401]
    assert await entries(session) == []


@override_settings(SESSIONS_APP={"DOORS_RUN_START_TIMEOUT": 0.3})
async def test_without_an_agent_the_stream_reports_an_error(alice, session):
    response = await AsyncClient().post(
        URL, chat_body(), content_type=JSON, headers=await auth(alice)
    )
    chunks = chunks_of(await read_sse(response))
    assert [c if isinstance(c, str) else c["type"] for c in chunks] == ["error", "[DONE]"]


async def test_resume_is_204_when_nothing_is_going(alice, session):
    client = AsyncClient()
    empty = await client.get(URL + "/chat-1/stream", headers=await auth(alice))
    await publish(session, run_events())
    ended = await client.get(URL + "/chat-1/stream", headers=await auth(alice))
    assert [empty.status_code, ended.status_code] == [204, 204]
    assert not empty.has_header("Content-Type")


async def test_resume_replays_the_going_run_from_its_start_then_follows_it(alice, session):
    await publish(session, run_events(end=None, words=("Once ", "upon ")))
    response = await AsyncClient().get(URL + "/chat-1/stream", headers=await auth(alice))
    assert response.status_code == 200
    rest = [
        {"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "message": "m1", "data": {"delta": "a time"}},
        {"type": "RUN_FINISHED", "run": "r1"},
    ]
    agent = asyncio.create_task(publish(session, rest))
    chunks = chunks_of(await read_sse(response))
    await agent
    assert chunks[0] == {"type": "start", "messageId": "r1"}
    assert "".join(c.get("delta", "") for c in chunks[:-1]) == "Once upon a time"
    assert chunks[-2:] == [{"type": "finish"}, "[DONE]"]


async def test_stop_cancels_the_going_run_and_its_stream_ends_with_abort(alice, session):
    await publish(session, run_events(end=None))
    client = AsyncClient()
    stream = await client.get(URL + "/chat-1/stream", headers=await auth(alice))
    stop = await client.post(URL + "/chat-1/stop", headers=await auth(alice))
    assert stop.status_code == 200 and json.loads(stop.content)["cancelled"] == ["r1"]
    assert (await entries(session))[-1]["type"] == "CANCEL"
    ack = [
        {"type": "CONTROL_ACK", "run": "r1", "data": {"action": "cancel"}},
        {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": "cancelled"}},
    ]
    await publish(session, ack)
    chunks = chunks_of(await read_sse(stream))
    assert chunks[-2:] == [{"type": "abort"}, "[DONE]"]


async def test_stop_with_nothing_going_is_a_conflict_and_writes_nothing(alice, session):
    response = await AsyncClient().post(URL + "/chat-1/stop", headers=await auth(alice))
    assert response.status_code == 409
    assert json.loads(response.content)["code"] == "not_running"
    assert await entries(session) == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [("[" * 100_000, 400, "bad_request"), (" " * (10 * 1024 * 1024), 413, "limit_exceeded")],
)
async def test_deep_or_huge_bodies_get_a_json_4xx_and_write_nothing(
    alice, session, body, status, code
):
    response = await AsyncClient().post(URL, body, content_type=JSON, headers=await auth(alice))
    assert response.status_code == status and response["Content-Type"] == JSON
    assert json.loads(response.content)["code"] == code
    assert await entries(session) == []
