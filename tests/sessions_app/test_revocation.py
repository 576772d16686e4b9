"""Revocation reaches open connections: a removed member, a revoked or re-scoped key and a
deactivated user stop receiving and cannot publish, on WebSockets and on the HTTP streams."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.test import AsyncClient, override_settings
from django.test import Client as DjangoClient
from django.test.utils import CaptureQueriesContext
from django.urls import include, path

from sessions_app import keys, log, revocation, services
from sessions_app.access import Actor, mint_token
from sessions_app.models import ApiKey, Entry, Membership, Session, Turn
from tests.sessions_app.conftest import add_member, connect, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]
urlpatterns = [
    path("sessions/", include("sessions_app.doors.urls")),
    path("v1/stream/", include("sessions_app.streams.urls")),
]

db = database_sync_to_async


async def publish(session, delta="after"):
    await log.append(services.request(session.pk, [text(delta=delta)]))


async def entry_count(session):
    return await db(Entry.objects.filter(session=session).count)()


async def closed_with(client, timeout=5.0) -> tuple[list[dict], int]:
    """The frames a socket gets until the server closes it, and the close code."""
    frames = []
    while True:
        message = await client.ws.receive_output(timeout)
        if message["type"] == "websocket.close":
            return frames, message.get("code")
        frames.append(json.loads(message["text"]))


def key_headers(secret):
    return [(b"authorization", f"Bearer {secret}".encode())]


# --- WebSockets --------------------------------------------------------------------------------


async def test_a_removed_member_loses_the_subscription_and_cannot_publish(alice, bob, session):
    await db(add_member)(session, bob)
    async with connect(bob) as member:
        await member.subscribe("chat-1")
        await db(Membership.objects.filter(user=bob).delete)()
        error = await member.recv_type("error")
        assert error["code"] == "not_found" and error["session"] == "chat-1"
        await publish(session)
        assert await member.nothing_more(0.5)
        refused = await member.publish("chat-1", [text(delta="still here?")])
        assert refused["type"] == "error" and refused["code"] == "not_found"
    assert await entry_count(session) == 1


async def test_a_revoked_key_closes_its_socket(alice, session):
    key, secret = await db(keys.create_key)(alice, "agent", all_sessions=True)
    async with connect(headers=key_headers(secret)) as agent:
        await agent.subscribe("chat-1")
        await db(keys.revoke)(key)
        frames, code = await closed_with(agent)
        assert code == 4401
        assert [f["code"] for f in frames if f["type"] == "error"] == ["unauthenticated"]
        assert not [f for f in frames if f["type"] == "events"]
        await publish(session)
        await agent.send({"op": "publish", "id": 1, "session": "chat-1", "events": [text()]})
        await asyncio.sleep(0.3)  # a bound on a negative: time for a wrongly taken publish to land
    assert await entry_count(session) == 1


async def test_a_deactivated_user_is_closed(alice, session):
    async with connect(alice) as browser:
        await browser.subscribe("chat-1")
        alice.is_active = False
        await db(alice.save)()
        _, code = await closed_with(browser)
        assert code == 4401


async def test_a_narrowed_key_scope_cuts_only_the_sessions_it_lost(alice, session):
    other = await db(Session.objects.create)(name="chat-2", owner=alice)
    key, secret = await db(keys.create_key)(alice, "agent", [session, other])
    async with connect(headers=key_headers(secret)) as agent:
        await agent.subscribe("chat-1")
        await agent.subscribe("chat-2")
        await db(key.sessions.remove)(other)
        error = await agent.recv_type("error")
        assert (error["code"], error["session"]) == ("not_found", "chat-2")
        await publish(session, "kept")
        assert [e["data"]["delta"] for e in await agent.events(1)] == ["kept"]


@override_settings(SESSIONS_APP={"ACCESS_RECHECK_SECONDS": 0.2})
async def test_a_change_no_signal_announces_is_found_by_the_periodic_check(alice, session):
    key, secret = await db(keys.create_key)(alice, "agent", all_sessions=True)
    async with connect(headers=key_headers(secret)) as agent:
        await agent.subscribe("chat-1")
        # A queryset update sends no signal: only the periodic re-check can notice it.
        await db(ApiKey.objects.filter(pk=key.pk).update)(revoked_at="2020-01-01T00:00:00Z")
        _, code = await closed_with(agent, timeout=3)
        assert code == 4401


def test_the_periodic_recheck_of_many_sockets_costs_a_few_queries_and_answers_as_connecting(
    alice, make_user, session
):
    # Every kind of socket a worker may hold, each following sessions it may or may not reach.
    chat2 = Session.objects.create(name="chat-2", owner=alice)
    Session.objects.create(name="chat-3", owner=alice, deleted=True)
    names = ["chat-1", "chat-2", "chat-3", "nowhere"]
    work = []
    for i in range(30):  # members, former members, a deactivated user: browsers with tokens
        user = make_user(f"u{i}")
        if i % 2 == 0:
            add_member(session, user)
        if i == 4:
            user.is_active = False
            user.save()
        login = None
        if i % 4 == 2:  # let in by the session cookie, some of them logged out since
            browser = DjangoClient()
            browser.force_login(user)
            login = browser.cookies[settings.SESSION_COOKIE_NAME].value
            if i % 8 == 2:
                browser.logout()
        work.append((revocation.Grant(Actor(user), login=login), names))
    work.append((revocation.Grant(Actor(alice, frozenset({"chat-1", "chat-3"}))), names))
    texts = [
        keys.create_key(alice, "all", all_sessions=True)[1],
        keys.create_key(alice, "one", [chat2])[1],
        keys.create_key(make_user("gone"), "all", all_sessions=True)[1],
        "dsk_nope_nope",
        "not a key",
    ]
    revoked, text = keys.create_key(alice, "revoked", all_sessions=True)
    keys.revoke(revoked)
    worker, worker_text = keys.create_key(alice, "worker", agents="*")
    Turn.objects.create(session=chat2, message="m", message_seq=1, agent="a", state="claimed",
                        key=worker)  # fmt: skip
    for raw in [*texts, text, worker_text, worker_text]:
        actor = Actor(alice)  # what it was let in as does not matter for a key: asked again
        work.append((revocation.Grant(actor, raw), names))
    type(alice)._default_manager.filter(username="gone").update(is_active=False)
    with CaptureQueriesContext(connection) as asked:
        answers = revocation._check_all(work)
    # The same answers as asking socket by socket, as connecting does ...
    assert answers == [revocation.reachable(grant, names) for grant, names in work]
    assert answers[0][1] == {"chat-1"} and answers[1][1] == set() and answers[4][1] == set()
    assert answers[6][1] == {"chat-1"} and answers[2][1] == set()  # a login held, one ended
    assert answers[30][1] == {"chat-1"}
    assert [allowed for _, allowed in answers[31:]] == [
        {"chat-1", "chat-2"},
        {"chat-2"},
        set(),
        set(),
        set(),
        set(),
        {"chat-2"},
        {"chat-2"},
    ]
    # ... in a few queries for 39 sockets (keys, their use, their scopes, users, logins,
    # sessions, memberships, turns), not a few per socket.
    assert len(asked) <= 8, [q["sql"] for q in asked]


# --- HTTP streams ------------------------------------------------------------------------------


async def read_until_end(response, timeout=10.0) -> str:
    text = ""

    async def read():
        nonlocal text
        async for chunk in response.streaming_content:
            text += chunk.decode() if isinstance(chunk, bytes) else chunk

    await asyncio.wait_for(read(), timeout)
    return text


async def bearer(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {await db(mint_token)(user)}"}


def run_started(run="r1"):
    return [{"type": "RUN_STARTED", "run": run, "agent": "writer"}]


async def test_an_agui_stream_of_a_removed_member_ends_with_run_error(
    alice, bob, session, long_poll_waiting
):
    await db(add_member)(session, bob)
    await log.append(services.request(session.pk, run_started()))
    response = await AsyncClient().get(
        "/sessions/agui/chat-1/connect?protocolVersion=1", headers=await bearer(bob)
    )
    assert response.status_code == 200
    reading = asyncio.ensure_future(read_until_end(response))
    await asyncio.wait_for(long_poll_waiting.wait(), 10)  # its groups joined: it hears the change
    await db(Membership.objects.filter(user=bob).delete)()
    body = await reading
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "RUN_ERROR" and events[-1]["code"] == "not_found"


async def test_an_aisdk_stream_of_a_revoked_key_ends(alice, session, long_poll_waiting):
    key, secret = await db(keys.create_key)(alice, "agent", all_sessions=True)
    await log.append(services.request(session.pk, run_started()))
    response = await AsyncClient().get(
        "/sessions/aisdk/chat/chat-1/stream", headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 200
    reading = asyncio.ensure_future(read_until_end(response))
    await asyncio.wait_for(long_poll_waiting.wait(), 10)  # its groups joined: it hears the change
    await db(keys.revoke)(key)
    body = await reading
    assert '"type":"error"' in body.replace(" ", "") and body.rstrip().endswith("[DONE]")


@override_settings(SESSIONS_APP={"ANONYMOUS_STREAM_PREFIX": None})
async def test_a_durable_streams_sse_reader_removed_from_the_session_is_ended(
    alice, bob, session, long_poll_waiting
):
    await db(add_member)(session, bob)
    response = await AsyncClient().get(
        "/v1/stream/chat-1?offset=-1&live=sse", headers=await bearer(bob)
    )
    assert response.status_code == 200
    reading = asyncio.ensure_future(read_until_end(response))
    await asyncio.wait_for(long_poll_waiting.wait(), 10)  # its groups joined: it hears the change
    await db(Membership.objects.filter(user=bob).delete)()
    await reading  # ends well before SSE_MAX_SECONDS
    await publish(session)


async def test_a_durable_streams_long_poll_of_a_deactivated_user_answers_404(
    alice, session, long_poll_waiting
):
    headers = await bearer(alice)
    polling = asyncio.ensure_future(
        AsyncClient().get("/v1/stream/chat-1?offset=-1&live=long-poll", headers=headers)
    )
    await asyncio.wait_for(long_poll_waiting.wait(), 10)
    alice.is_active = False
    await db(alice.save)()
    response = await asyncio.wait_for(polling, 5)
    assert response.status_code == 404
