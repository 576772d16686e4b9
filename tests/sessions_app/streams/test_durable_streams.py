"""The Durable Streams door on our log: sessions, authorization, live wake-ups, forks.

The public conformance suite (tests/e2e/test_durable_streams_conformance.py) judges the
protocol on anonymous streams; these tests cover what it cannot see: session streams and
their owners, the WebSocket door and this one sharing one log, and live readers across the
channel layer (including a lost notification).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import AsyncClient, override_settings
from django.urls import include, path

from sessions_app import log
from sessions_app.access import Actor, mint_token
from sessions_app.models import Entry, Session
from sessions_app.streams import store
from sessions_app.streams.asgi import with_streams
from tests.sessions_app.conftest import add_member, connect, text

# Mounted here too, so the test runs under a site that has not mounted the door yet.
urlpatterns = [path("v1/stream/", include("sessions_app.streams.urls"))]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

db = database_sync_to_async
URL = "/v1/stream/"
PUBLIC = {"ANONYMOUS_STREAM_PREFIX": "public/", "LONG_POLL_TIMEOUT": 5}
JSON = "application/json"


def bearer(user, sessions=None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(user, sessions)}"}


async def auth(user, sessions=None) -> dict[str, str]:
    return await db(bearer)(user, sessions)


async def entries(session) -> list[dict]:
    rows = await db(list)(
        Entry.objects.filter(session=session).order_by("seq").values_list("body", flat=True)
    )
    return [json.loads(bytes(body)) for body in rows]


def event(delta: str) -> dict:
    return text(delta=delta)


# --- session streams: who may read and write ---------------------------------------------------


async def test_a_session_is_readable_by_its_owner_with_a_bearer_token(alice, session):
    await db(log.append_sync)(
        log.AppendRequest(session.pk, [log.Item(json.dumps({**event("hi"), "time": 1}))])
    )
    client = AsyncClient()
    response = await client.get(URL + "chat-1?offset=-1", headers=await auth(alice))
    assert response.status_code == 200
    assert response["Content-Type"] == JSON
    assert [e["data"]["delta"] for e in json.loads(response.content)] == ["hi"]
    assert response["Stream-Next-Offset"] == "0000000000000000_0000000000000001"
    assert response["Cache-Control"].startswith("private")


async def test_a_session_is_invisible_without_the_right_credentials(alice, bob, session):
    client = AsyncClient()
    anonymous = await client.get(URL + "chat-1?offset=-1")
    stranger = await client.get(URL + "chat-1?offset=-1", headers=await auth(bob))
    scoped_elsewhere = await client.get(
        URL + "chat-1?offset=-1", headers=await auth(alice, ["other"])
    )
    assert [anonymous.status_code, stranger.status_code, scoped_elsewhere.status_code] == [404] * 3
    # "absent or forbidden: the same answer", and still a protocol response a browser may read
    assert anonymous["Access-Control-Allow-Origin"] == "*"


async def test_members_read_and_write_but_only_the_owner_deletes(alice, bob, session):
    await db(add_member)(session, bob)
    token = await db(mint_token)(bob)
    client = AsyncClient()
    response = await client.get(URL + f"chat-1?offset=-1&token={token}")
    assert response.status_code == 200 and json.loads(response.content) == []
    write = await client.post(
        URL + f"chat-1?token={token}", data=json.dumps(event("b")), content_type=JSON
    )
    assert write.status_code == 204
    assert (await client.delete(URL + f"chat-1?token={token}")).status_code == 403
    assert (await client.delete(URL + "chat-1", headers=await auth(alice))).status_code == 204
    assert not await db(Session.objects.filter(name="chat-1").exists)()


async def test_a_bad_or_expired_token_is_refused_with_401(alice, session):
    client = AsyncClient()
    forged = await client.get(URL + "chat-1?offset=-1", headers={"Authorization": "Bearer nope"})
    assert forged.status_code == 401
    assert "token" in json.loads(forged.content)["message"]
    with override_settings(SESSIONS_APP={"TOKEN_MAX_AGE": 1}):
        headers = await auth(alice)
        await asyncio.sleep(2.1)
        expired = await client.get(URL + "chat-1?offset=-1", headers=headers)
    assert expired.status_code == 401


async def test_a_deactivated_users_token_stops_opening_the_session_within_a_second(alice, session):
    client = AsyncClient()
    headers = await auth(alice)
    assert (await client.get(URL + "chat-1?offset=-1", headers=headers)).status_code == 200
    alice.is_active = False
    await db(alice.save)()
    await asyncio.sleep(1.1)  # each worker asks again whether the user is active after 1 s
    refused = await client.get(URL + "chat-1?offset=-1", headers=headers)
    assert refused.status_code == 401
    write = await client.post(
        URL + "chat-1", data=json.dumps(event("x")), content_type=JSON, headers=headers
    )
    assert write.status_code == 401
    assert await entries(session) == []


async def test_appends_to_a_session_must_be_valid_events_and_a_bad_one_writes_nothing(
    alice, session
):
    client = AsyncClient()
    headers = await auth(alice)
    bad = await client.post(
        URL + "chat-1",
        data=json.dumps([event("a"), {"type": "NOT_AN_EVENT"}]),
        content_type=JSON,
        headers=headers,
    )
    assert bad.status_code == 400
    assert "event 1" in json.loads(bad.content)["message"]
    assert await entries(session) == []
    good = await client.post(
        URL + "chat-1",
        data=json.dumps([event("a"), event("b")]),
        content_type=JSON,
        headers=headers,
    )
    assert good.status_code == 204
    stored = await entries(session)
    assert [e["data"]["delta"] for e in stored] == ["a", "b"]
    assert all(isinstance(e["time"], int) for e in stored)  # stored as every door stores events


async def test_a_cookie_login_reads_but_writes_only_with_the_csrf_token(alice, session):
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(alice)
    read = await client.get(URL + "chat-1?offset=-1")
    assert read.status_code == 200
    write = await client.post(URL + "chat-1", data=json.dumps(event("x")), content_type=JSON)
    assert write.status_code == 401
    assert "CSRF" in json.loads(write.content)["message"]
    assert await entries(session) == []


async def test_authenticated_users_create_sessions_they_own(alice):
    client = AsyncClient()
    created = await client.put(
        URL + "my-chat", data=b"[]", content_type=JSON, headers=await auth(alice)
    )
    assert created.status_code == 201
    owner = await db(lambda: Session.objects.get(name="my-chat").owner_id)()
    assert owner == alice.pk
    nobody = await client.put(URL + "their-chat", data=b"[]", content_type=JSON)
    assert nobody.status_code == 401


# --- anonymous streams -------------------------------------------------------------------------


async def test_without_the_setting_there_are_no_anonymous_streams():
    response = await AsyncClient().put(URL + "public/x", data=b"hi", content_type="text/plain")
    assert response.status_code == 401
    assert not await db(Session.objects.exists)()


@override_settings(SESSIONS_APP=PUBLIC)
async def test_the_prefix_opens_anonymous_streams_only_under_it():
    client = AsyncClient()
    created = await client.put(URL + "public/x", data=b"hi", content_type="text/plain")
    assert created.status_code == 201
    assert created["Location"] == "http://testserver/v1/stream/public/x"
    read = await client.get(URL + "public/x?offset=-1")
    assert read.content == b"hi" and read["Content-Type"] == "text/plain"
    outside = await client.put(URL + "private/x", data=b"hi", content_type="text/plain")
    assert outside.status_code == 401


@override_settings(SESSIONS_APP=PUBLIC)
async def test_bad_input_gets_the_protocols_status_and_writes_nothing():
    client = AsyncClient()
    await client.put(URL + "public/j", data=b"[]", content_type=JSON)
    cases = [
        (lambda: client.post(URL + "public/j", data=b"{not json", content_type=JSON), 400),
        (lambda: client.post(URL + "public/j", data=b"[]", content_type=JSON), 400),
        (lambda: client.post(URL + "public/j", data=b'{"a":1}', content_type="text/plain"), 409),
        (lambda: client.get(URL + "public/j?offset=../x"), 400),
        (lambda: client.get(URL + "public/j?offset=-1&offset=now"), 400),
        (lambda: client.get(URL + "public/j?live=long-poll"), 400),
        (lambda: client.put(URL + "public/k", headers={"Stream-TTL": "1e3"}), 400),
    ]
    for request, status in cases:
        response = await request()
        assert response.status_code == status, (response.status_code, response.content)
        assert json.loads(response.content)["message"]
    tail = await client.get(URL + "public/j?offset=-1")
    assert json.loads(tail.content) == [] and tail["Stream-Next-Offset"].endswith("0000")
    assert not await db(Session.objects.filter(name="public/k").exists)()


@override_settings(SESSIONS_APP=PUBLIC)
async def test_a_body_that_cannot_be_stored_is_refused_alone_and_the_batch_it_shares_lands(
    alice, session
):
    client = AsyncClient()
    await client.put(URL + "public/j", data=b"[]", content_type=JSON)
    stream = await db(store.load)("public/j")
    access = store.Access(Actor(AnonymousUser()), "public/")
    lone_surrogate = b'{"a":"\\ud83d"}'  # valid JSON; no UTF-8 encoding of that string exists
    too_deep = b"[" * 100_000
    good = store.Post(access, "public/j", b'{"a":1}', JSON)
    results = await asyncio.gather(
        store.append(good),
        store.append(store.Post(access, "public/j", lone_surrogate, JSON)),
        store.append(store.Post(access, "public/j", too_deep, JSON)),
        store.append(good),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == [
        "AppendResult",
        "BadRequest",
        "BadRequest",
        "AppendResult",
    ]
    for body in (lone_surrogate, too_deep):
        refused = await client.post(URL + "public/j", data=body, content_type=JSON)
        assert refused.status_code == 400 and json.loads(refused.content)["message"]
    read = await client.get(URL + "public/j?offset=-1")
    assert json.loads(read.content) == [{"a": 1}, {"a": 1}]
    # A session stream refuses the same event the same way.
    headers = await auth(alice)
    event = b'{"type":"CUSTOM","data":{"name":"x","value":"\\ud83d"}}'
    refused = await client.post(URL + "chat-1", data=event, content_type=JSON, headers=headers)
    assert refused.status_code == 400
    assert await entries(session) == [] and stream is not None


# --- one log, two doors; live readers ----------------------------------------------------------


async def test_websocket_subscribers_see_appends_made_over_http(alice, session):
    headers = await auth(alice)
    async with connect(alice) as ws:
        await ws.subscribe("chat-1")
        response = await AsyncClient().post(
            URL + "chat-1", data=json.dumps(event("over http")), content_type=JSON, headers=headers
        )
        assert response.status_code == 204
        live = await ws.events(1)
    assert live[0]["data"]["delta"] == "over http"
    assert live[0]["offset"] == response["Stream-Next-Offset"]


@override_settings(SESSIONS_APP={"LONG_POLL_TIMEOUT": 10})
async def test_a_long_poll_wakes_when_the_websocket_door_publishes(
    alice, session, long_poll_waiting
):
    headers = await auth(alice)
    url = URL + "chat-1?offset=now&live=long-poll"
    poll = asyncio.create_task(AsyncClient().get(url, headers=headers))
    await asyncio.wait_for(long_poll_waiting.wait(), 10)
    started = time.monotonic()
    async with connect(alice) as ws:
        await ws.publish("chat-1", [event("live")])
    response = await poll
    assert response.status_code == 200
    assert time.monotonic() - started < 3  # the notification woke it, not the 10 s timeout
    assert [e["data"]["delta"] for e in json.loads(response.content)] == ["live"]
    assert response["Stream-Up-To-Date"] == "true" and response["Stream-Cursor"].isdigit()


@override_settings(SESSIONS_APP={**PUBLIC, "LONG_POLL_TIMEOUT": 3})
async def test_a_long_poll_still_delivers_when_the_notification_is_lost(
    monkeypatch, long_poll_waiting
):
    client = AsyncClient()
    await client.put(URL + "public/lost", data=b"[]", content_type=JSON)
    stream = await db(store.load)("public/lost")

    async def lost(notes):
        return None

    monkeypatch.setattr("sessions_app.log.fanout.notify", lost)
    poll = asyncio.create_task(client.get(URL + "public/lost?offset=now&live=long-poll"))
    await asyncio.wait_for(long_poll_waiting.wait(), 10)
    await log.append(log.AppendRequest(stream.pk, [log.Item(b'{"n":1}')]))
    response = await poll
    assert response.status_code == 200  # the re-check at the timeout found it
    assert json.loads(response.content) == [{"n": 1}]


@override_settings(SESSIONS_APP={"LONG_POLL_TIMEOUT": 5})
async def test_sse_follows_a_session_with_a_control_event_after_each_data_event(alice, session):
    headers = await auth(alice)
    response = await AsyncClient().get(URL + "chat-1?offset=-1&live=sse", headers=headers)
    assert response["Content-Type"] == "text/event-stream"
    assert "Stream-SSE-Data-Encoding" not in response  # JSON goes as it is
    chunks = aiter(response.streaming_content)
    first = (await anext(chunks)).decode()
    assert first.startswith("event: control\n") and '"upToDate":true' in first
    async with connect(alice) as ws:
        await ws.publish("chat-1", [event("a"), event("b")])
    frame = (await asyncio.wait_for(anext(chunks), 3)).decode()
    data, control = frame.split("\n\n")[:2]
    assert data.startswith("event: data\ndata:[")
    assert [e["data"]["delta"] for e in json.loads(data.split("data:", 1)[1])] == ["a", "b"]
    assert control.startswith("event: control\n")
    assert '"streamNextOffset":"0000000000000000_0000000000000002"' in control
    await chunks.aclose()


# --- forks and soft delete ---------------------------------------------------------------------


@override_settings(SESSIONS_APP=PUBLIC)
async def test_a_fork_reads_its_parent_below_the_fork_point_even_after_the_parent_is_deleted():
    client = AsyncClient()
    await client.put(URL + "public/p", data=b'[{"n":1},{"n":2}]', content_type=JSON)
    fork = await client.put(
        URL + "public/f",
        headers={"Stream-Forked-From": "/v1/stream/public/p"},
    )
    assert fork.status_code == 201 and fork["Content-Type"] == JSON  # inherited
    await client.post(URL + "public/p", data=b'{"n":"parent only"}', content_type=JSON)
    await client.post(URL + "public/f", data=b'{"n":"fork only"}', content_type=JSON)
    assert (await client.delete(URL + "public/p")).status_code == 204
    assert (await client.get(URL + "public/p?offset=-1")).status_code == 410
    assert (await client.put(URL + "public/p", data=b"[]", content_type=JSON)).status_code == 409
    read = await client.get(URL + "public/f?offset=-1")
    assert json.loads(read.content) == [{"n": 1}, {"n": 2}, {"n": "fork only"}]
    # the parent's entries are shared, not copied
    assert await db(Entry.objects.filter(session__name="public/f").count)() == 1
    assert (await client.delete(URL + "public/f")).status_code == 204
    assert not await db(Session.objects.filter(name__startswith="public/").exists)()


# --- the fast path and the settings checks ---------------------------------------------------


async def teapot(scope, receive, send):
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def asgi_get(app, path: str, headers=()) -> tuple[int, dict[bytes, bytes], bytes]:
    communicator = HttpCommunicator(app, "GET", path, headers=[(b"host", b"testserver"), *headers])
    response = await communicator.get_response(timeout=5)
    return response["status"], dict(response["headers"]), response["body"]


@override_settings(SESSIONS_APP=PUBLIC)
async def test_with_streams_serves_the_door_and_passes_everything_else_on(alice, session):
    app = with_streams(teapot)
    await db(log.append_sync)(
        log.AppendRequest(session.pk, [log.Item(json.dumps({**event("hi"), "time": 1}))])
    )
    client = AsyncClient()
    await client.aforce_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    status, headers, body = await asgi_get(app, URL + "chat-1?offset=-1", [(b"cookie", cookie)])
    assert status == 200 and headers[b"Stream-Up-To-Date"] == b"true"
    assert [e["data"]["delta"] for e in json.loads(body)] == ["hi"]
    assert (await asgi_get(app, URL + "chat-1?offset=-1"))[0] == 404  # no cookie, no session
    assert (await asgi_get(app, "/admin/"))[0] == 418


async def asgi_call(app, method: str, path: str, body: bytes = b"", headers=()):
    communicator = HttpCommunicator(
        app, method, path, body=body, headers=[(b"host", b"testserver"), *headers]
    )
    response = await communicator.get_response(timeout=5)
    return response["status"], dict(response["headers"]), response["body"]


@override_settings(SESSIONS_APP=PUBLIC)
async def test_with_streams_appends_with_a_token_and_refuses_a_cookie_without_csrf(alice, session):
    app = with_streams(teapot)
    token = (await auth(alice))["Authorization"].encode()
    headers = [(b"authorization", token), (b"content-type", JSON.encode())]
    body = json.dumps([event("a"), event("b")]).encode()
    status, answer, _ = await asgi_call(app, "POST", URL + "chat-1", body, headers)
    assert status == 204 and answer[b"Stream-Next-Offset"].endswith(b"2")
    client = AsyncClient()
    await client.aforce_login(alice)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
    refused = await asgi_call(
        app, "POST", URL + "chat-1", json.dumps(event("c")).encode(), [cookie, headers[1]]
    )
    assert refused[0] == 401 and b"CSRF" in refused[2]
    assert [e["data"]["delta"] for e in await entries(session)] == ["a", "b"]
    # A closed stream refuses the next append and keeps what it had.
    closed = await asgi_call(
        app, "POST", URL + "chat-1", b"", [headers[0], (b"stream-closed", b"true")]
    )
    assert closed[0] == 204 and closed[1][b"Stream-Closed"] == b"true"
    late = await asgi_call(app, "POST", URL + "chat-1", json.dumps(event("d")).encode(), headers)
    assert late[0] == 409 and len(await entries(session)) == 2


def test_the_settings_checks_name_the_bad_stream_settings():
    from sessions_app.checks import check_settings

    bad = {
        "ANONYMOUS_STREAM_PREFIX": 1,
        "LONG_POLL_TIMEOUT": 0,
        "SSE_MAX_SECONDS": "60",
        "STREAMS_LOOP_CONNECTION": "no",
    }
    with override_settings(SESSIONS_APP=bad):
        ids = [error.id for error in check_settings()]
    assert ids.count("sessions_app.E010") == 1 and ids.count("sessions_app.E011") == 2
    assert ids.count("sessions_app.E012") == 1
    with override_settings(SESSIONS_APP={"ANONYMOUS_STREAM_PREFIX": "public/"}):
        assert not [e for e in check_settings() if e.id.startswith("sessions_app.E01")]
