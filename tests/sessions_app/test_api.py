"""The REST API: sessions, events, long-poll, runs, control, presence, API keys."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.apps import apps
from django.test import AsyncClient, Client

from sessions_app import keys, log, services
from sessions_app.models import ApiKey, Entry, Run, Session
from tests.sessions_app.conftest import add_member, connect

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async
BASE = "/api/sessions"


def text(delta, message="m1", run=None):
    event = {"type": "TEXT_MESSAGE_CONTENT", "message": message, "data": {"delta": delta}}
    return {**event, "run": run} if run else event


@pytest.fixture
def api(alice):
    client = Client()
    client.force_login(alice)
    return client


def post(client, path, body, **headers):
    return client.post(BASE + path, json.dumps(body), content_type="application/json", **headers)


def bearer(secret):
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def entries(session):
    return Entry.objects.filter(session=session).count()


# --- sessions ------------------------------------------------------------------------------


def test_create_list_and_read_sessions(api, bob):
    made = post(api, "/", {"title": "Trip", "members": ["bob"], "metadata": {"topic": "travel"}})
    assert made.status_code == 201
    body = made.json()
    assert body["owner"] == "alice" and body["members"] == ["bob"] and body["head"].endswith("0000")
    listed = api.get(BASE + "/").json()
    assert [s["name"] for s in listed["items"]] == [body["name"]] and listed["count"] == 1
    assert api.get(f"{BASE}/{body['name']}").json()["title"] == "Trip"


def test_bad_session_input_is_refused_with_a_code_and_writes_nothing(api, session):
    assert post(api, "/", {"name": "chat-1"}).json()["code"] == "conflict"
    unknown = post(api, "/", {"title": "x", "members": ["ghost"]})
    assert (unknown.status_code, unknown.json()["code"]) == (400, "bad_request")
    invalid = post(api, "/", {"name": "has space", "retention_days": -1})
    assert (invalid.status_code, invalid.json()["code"]) == (422, "invalid_input")
    assert Session.objects.count() == 1


def test_another_users_session_is_indistinguishable_from_an_absent_one(api, make_user):
    carol = make_user("carol")
    Session.objects.create(name="secret", owner=carol)
    for path in ("/secret", "/secret/events", "/secret/snapshot", "/secret/runs"):
        absent, forbidden = api.get(BASE + path.replace("secret", "nothing")), api.get(BASE + path)
        assert forbidden.status_code == absent.status_code == 404
        assert forbidden.json() == absent.json()
    assert post(api, "/secret/events", {"events": [text("x")]}).status_code == 404
    assert entries(Session.objects.get(name="secret")) == 0


def test_anonymous_requests_are_refused(session):
    reply = Client().get(f"{BASE}/chat-1")
    assert (reply.status_code, reply.json()["code"]) == (401, "unauthenticated")


def test_cookie_auth_needs_the_csrf_token_for_writes(alice, session):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert post(client, "/chat-1/events", {"events": [text("x")]}).status_code in (401, 403)
    assert entries(session) == 0


def test_members_use_a_session_only_the_owner_manages_it(api, bob, session):
    add_member(session, bob)
    member = Client()
    member.force_login(bob)
    assert post(member, "/chat-1/events", {"events": [text("hi")]}).status_code == 200
    assert (
        member.patch(
            f"{BASE}/chat-1", {"title": "mine"}, content_type="application/json"
        ).status_code
        == 404
    )
    assert api.delete(f"{BASE}/chat-1/members/bob").json()["members"] == []
    assert post(member, "/chat-1/events", {"events": [text("hi")]}).status_code == 404


def test_closing_a_session_stops_appends(api, session):
    assert api.patch(f"{BASE}/chat-1", {"closed": True}, content_type="application/json").json()[
        "closed"
    ]
    refused = post(api, "/chat-1/events", {"events": [text("late")]})
    assert (refused.status_code, refused.json()["code"]) == (409, "stream_closed")
    assert (
        api.patch(f"{BASE}/chat-1", {"closed": False}, content_type="application/json").status_code
        == 409
    )


# --- events --------------------------------------------------------------------------------


def test_publish_a_batch_with_an_idempotent_producer(api, session):
    body = {"events": [text("a"), text("b")], "producer": {"id": "agent", "epoch": 0, "seq": 0}}
    first = post(api, "/chat-1/events", body).json()
    again = post(api, "/chat-1/events", body).json()
    assert again == {**first, "duplicate": True, "message": None}
    gap = post(api, "/chat-1/events", {**body, "producer": {"id": "agent", "epoch": 0, "seq": 5}})
    assert (gap.status_code, gap.json()["code"], gap.json()["expected_seq"]) == (
        409,
        "producer_seq_gap",
        1,
    )
    assert entries(session) == 2


def test_one_bad_event_refuses_the_batch(api, session):
    reply = post(api, "/chat-1/events", {"events": [text("ok"), {"type": "TEXT_MESSAGE_CONTENT"}]})
    assert (reply.status_code, reply.json()["code"], reply.json()["index"]) == (400, "bad_event", 1)
    assert post(api, "/chat-1/events", {"events": []}).status_code == 422
    assert entries(session) == 0


def test_history_pages_by_offset(api, session):
    post(api, "/chat-1/events", {"events": [text(str(i)) for i in range(5)]})
    page = api.get(f"{BASE}/chat-1/events?limit=2").json()
    assert [e["data"]["delta"] for e in page["events"]] == ["0", "1"] and not page["up_to_date"]
    rest = api.get(f"{BASE}/chat-1/events?after={page['next_offset']}&limit=10").json()
    assert [e["data"]["delta"] for e in rest["events"]] == ["2", "3", "4"] and rest["up_to_date"]
    assert rest["events"][0]["offset"] == "0000000000000000_0000000000000003"
    bad = api.get(f"{BASE}/chat-1/events?after=7")
    assert (bad.status_code, bad.json()["code"]) == (400, "bad_offset")


def test_the_snapshot_folds_the_history(api, session):
    post(api, "/chat-1/messages", {"text": "Hi"})
    snap = api.get(f"{BASE}/chat-1/snapshot").json()
    assert snap["offset"].endswith("0003")
    assert snap["state"]["messages"][0] == {
        "id": snap["state"]["messages"][0]["id"], "role": "user", "run": None, "agent": None,
        "status": "complete", "text": "Hi",
    }  # fmt: skip


async def test_long_poll_answers_when_an_entry_is_committed(alice, session, long_poll_waiting):
    client = AsyncClient()
    await db(client.force_login)(alice)
    waiting = asyncio.ensure_future(client.get(f"{BASE}/chat-1/events/wait?timeout=10"))
    await asyncio.wait_for(long_poll_waiting.wait(), 10)
    assert not waiting.done()
    await log.append(services.request(session.pk, [text("wake up")]))
    reply = await asyncio.wait_for(waiting, 5)
    assert [e["data"]["delta"] for e in reply.json()["events"]] == ["wake up"]


async def test_long_poll_times_out_empty_and_up_to_date(alice, session):
    client = AsyncClient()
    await db(client.force_login)(alice)
    reply = (await client.get(f"{BASE}/chat-1/events/wait?timeout=0.3")).json()
    assert reply["events"] == [] and reply["up_to_date"] is True
    anonymous = await AsyncClient().get(f"{BASE}/chat-1/events/wait?timeout=0.3")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")


# --- runs and control ----------------------------------------------------------------------


def test_runs_start_finish_and_fail_as_a_tree(api, session):
    boss = post(api, "/chat-1/runs", {"run_id": "boss", "agent": "orchestrator"})
    assert boss.status_code == 201 and boss.json()["status"] == "running"
    child = post(api, "/chat-1/runs", {"agent": "researcher", "parent": "boss"}).json()
    assert child["parent"] == "boss"
    assert (
        post(api, f"/chat-1/runs/{child['run_id']}/fail", {"message": "tool broke"}).json()[
            "status"
        ]
        == "failed"
    )
    assert post(api, "/chat-1/runs/boss/finish", {}).json()["status"] == "finished"
    runs = api.get(f"{BASE}/chat-1/runs").json()["items"]
    assert [(r["run_id"], r["status"]) for r in runs] == [
        ("boss", "finished"),
        (child["run_id"], "failed"),
    ]
    assert post(api, "/chat-1/runs/boss/finish", {}).json()["code"] == "run_ended"


async def test_a_cancel_over_rest_reaches_an_agent_that_long_polls(
    alice, session, long_poll_waiting
):
    phone, agent = AsyncClient(), AsyncClient()
    await db(phone.force_login)(alice)
    _, secret = await db(keys.create_key)(alice, "agent", all_sessions=True)
    await log.append(services.request(session.pk, [{"type": "RUN_STARTED", "run": "r1"}]))
    auth = {"Authorization": f"Bearer {secret}"}
    head = (await agent.get(f"{BASE}/chat-1/events", headers=auth)).json()["next_offset"]
    waiting = asyncio.ensure_future(
        agent.get(f"{BASE}/chat-1/events/wait?after={head}&timeout=10", headers=auth)
    )
    await asyncio.wait_for(long_poll_waiting.wait(), 10)
    reply = await phone.post(
        f"{BASE}/chat-1/cancel", {"run": "r1"}, content_type="application/json"
    )
    assert reply.status_code == 200
    seen = (await asyncio.wait_for(waiting, 5)).json()["events"]
    assert [(e["type"], e.get("run")) for e in seen] == [("CANCEL", "r1")]
    assert await db(lambda: Run.objects.get(run_id="r1").status)() == "cancelling"


def test_steer_and_interrupt_over_rest(api, session):
    post(api, "/chat-1/runs", {"run_id": "r1"})
    assert post(api, "/chat-1/steer", {"run": "r1", "text": "faster"}).status_code == 200
    interrupted = post(api, "/chat-1/interrupt", {"text": "new plan"}).json()
    assert len(interrupted["offsets"]) == 4 and interrupted["message"]
    assert Run.objects.get(run_id="r1").status == "cancelling"
    assert post(api, "/chat-1/steer", {"run": "r1", "text": "x"}).json()["code"] == "run_ended"


async def test_presence_lists_the_devices_attached_over_websockets(alice, session):
    client = AsyncClient()
    await db(client.force_login)(alice)
    async with connect(alice, path="/ws/sessions/") as phone:
        await phone.subscribe("chat-1")
        hello_device = (await phone.request("presence", session="chat-1"))["self"]["id"]
        devices = (await client.get(f"{BASE}/chat-1/presence")).json()["devices"]
    assert [d["id"] for d in devices] == [hello_device]


# --- API keys ------------------------------------------------------------------------------


def test_an_api_key_is_shown_once_stored_hashed_and_works(api, session):
    made = post(api, "/keys/", {"name": "writer bot", "all_sessions": True}).json()
    secret = made["key"]
    stored = ApiKey.objects.get(pk=made["id"])
    assert (
        secret not in (stored.hashed, stored.prefix)
        and "key" not in api.get(BASE + "/keys/").json()["items"][0]
    )
    agent = Client()
    assert (
        post(
            agent, "/chat-1/events", {"events": [text("from agent")]}, **bearer(secret)
        ).status_code
        == 200
    )
    stored.refresh_from_db()
    assert stored.last_used_at is not None


def test_a_scoped_key_cannot_touch_another_session(api, alice, session):
    other = Session.objects.create(name="other", owner=alice)
    secret = post(api, "/keys/", {"name": "scoped", "sessions": ["chat-1"]}).json()["key"]
    agent = Client()
    assert (
        post(agent, "/other/events", {"events": [text("x")]}, **bearer(secret)).status_code == 404
    )
    assert agent.get(f"{BASE}/other", **bearer(secret)).status_code == 404
    assert [s["name"] for s in agent.get(BASE + "/", **bearer(secret)).json()["items"]] == [
        "chat-1"
    ]
    assert entries(other) == 0


def test_a_key_whose_sessions_were_deleted_reaches_nothing(api, alice, session):
    gone = Session.objects.create(name="gone", owner=alice)
    made = post(api, "/keys/", {"name": "scoped", "sessions": ["gone"]}).json()
    assert (made["all_sessions"], made["sessions"]) == (False, ["gone"])
    gone.delete()
    agent, auth = Client(), bearer(made["key"])
    listed = agent.get(BASE + "/", **auth).json()
    assert (listed["items"], listed["count"]) == ([], 0)
    assert agent.get(f"{BASE}/chat-1", **auth).status_code == 404
    assert agent.get(f"{BASE}/chat-1/events", **auth).status_code == 404
    assert post(agent, "/chat-1/events", {"events": [text("x")]}, **auth).status_code == 404
    assert entries(session) == 0


async def test_a_key_whose_sessions_were_deleted_reaches_nothing_over_websockets(alice, session):
    gone = await db(Session.objects.create)(name="gone", owner=alice)
    _, secret = await db(keys.create_key)(alice, "scoped", [gone])
    await db(gone.delete)()
    async with connect(headers=[(b"authorization", f"Bearer {secret}".encode())]) as agent:
        assert (await agent.recv())["type"] == "hello"
        assert (await agent.publish("chat-1", [text("hi")]))["code"] == "not_found"
        assert (await agent.request("subscribe", session="chat-1", after="-1"))[
            "code"
        ] == "not_found"
    assert await db(entries)(session) == 0


def test_a_key_names_its_scope_explicitly(api, session):
    # Without a flag, forgetting the sessions would make a key that reaches everything.
    for body in ({"name": "vague"}, {"name": "both", "sessions": ["chat-1"], "all_sessions": True}):
        refused = post(api, "/keys/", body)
        assert (refused.status_code, refused.json()["code"]) == (400, "bad_request")
    assert ApiKey.objects.count() == 0
    made = post(api, "/keys/", {"name": "all", "all_sessions": True}).json()
    assert (made["all_sessions"], made["sessions"]) == (True, [])


def test_keys_made_before_the_flag_keep_reaching_what_they_reached(alice, session):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("sessions_app.migrations.0003_apikey_all_sessions")
    unscoped, _ = keys.create_key(alice, "old", all_sessions=True)
    scoped, _ = keys.create_key(alice, "old scoped", [session])
    ApiKey.objects.update(all_sessions=False)  # as the rows read before the migration
    migration.keys_without_sessions_reach_all(apps, None)
    unscoped.refresh_from_db(), scoped.refresh_from_db()
    assert (unscoped.all_sessions, scoped.all_sessions) == (True, False)


def test_a_revoked_key_is_refused_and_keys_cannot_make_keys(api, session):
    made = post(api, "/keys/", {"name": "temp", "all_sessions": True}).json()
    agent = Client()
    assert post(agent, "/keys/", {"name": "escalate"}, **bearer(made["key"])).status_code == 404
    assert api.delete(f"{BASE}/keys/{made['id']}").json()["revoked"] is True
    refused = agent.get(f"{BASE}/chat-1", **bearer(made["key"]))
    assert refused.status_code == 401
    assert agent.get(f"{BASE}/chat-1", **bearer("dsk_nothing_here")).status_code == 401


async def test_agents_connect_websockets_with_their_api_key(alice, session):
    _, secret = await db(keys.create_key)(alice, "ws agent", all_sessions=True)
    async with connect(headers=[(b"authorization", f"Bearer {secret}".encode())]) as agent:
        assert (await agent.recv())["type"] == "hello"
        assert (await agent.publish("chat-1", [text("hi")]))["type"] == "ack"


def test_the_openapi_schema_documents_every_endpoint(api):
    schema = api.get("/api/openapi.json").json()
    paths = schema["paths"]
    for path in ("/api/sessions/", "/api/sessions/{name}/events", "/api/sessions/{name}/events/wait",
                 "/api/sessions/{name}/cancel", "/api/sessions/keys/"):  # fmt: skip
        assert path in paths


def test_nul_characters_are_refused_on_every_engine_and_nothing_is_written(api, session):
    # A lone surrogate (half of an emoji) is refused the same way: no engine can store it.
    for body in ({"title": "a\x00b"}, {"members": ["bo\x00b"]}, {"metadata": {"k": "half \ud83d"}}):
        reply = post(api, "/", body)
        assert (reply.status_code, reply.json()["code"]) == (400, "bad_request")
    assert post(api, "/chat-1/members", {"username": "x\x00"}).status_code == 400
    assert Session.objects.count() == 1


def test_nan_or_infinity_in_an_event_is_refused_and_nothing_is_written(api, session):
    # Python's JSON parser lets NaN through; stored, it would break every reader of the log.
    for value in ("NaN", "Infinity", "-Infinity"):
        body = '{"events": [{"type": "CUSTOM", "data": {"name": "x", "value": VALUE}}]}'
        body = body.replace("VALUE", value)
        refused = api.post(BASE + "/chat-1/events", body, content_type="application/json")
        assert refused.status_code == 400, refused.content
        assert "NaN" in refused.json()["message"] or "JSON" in refused.json()["message"]
    assert entries(session) == 0
    snapshot = api.get(BASE + "/chat-1/snapshot")
    assert snapshot.status_code == 200 and snapshot.json()["offset"].endswith("0000")


def test_a_lone_surrogate_or_deep_nesting_in_an_event_is_refused_and_nothing_is_written(
    api, session
):
    # Both are valid JSON to Python's parser; neither can be stored (no UTF-8 for a lone
    # surrogate; nesting past the recursion limit).
    for value in ('"\\ud83d"', "[" * 100_000 + "]" * 100_000):
        body = '{"events": [{"type": "CUSTOM", "data": {"name": "x", "value": VALUE}}]}'
        body = body.replace("VALUE", value)
        refused = api.post(BASE + "/chat-1/events", body, content_type="application/json")
        assert refused.status_code in (400, 422), refused.content[:300]
    assert entries(session) == 0


def test_nan_in_session_metadata_is_refused_with_a_code_and_writes_nothing(api, session):
    # 1e400 and the like are numbers Python reads as infinity: no JSON column takes them
    # (PostgreSQL: a 500; SQLite: a misleading 409 "a session with this name exists").
    for value in ("NaN", "Infinity", "-Infinity", "1e400", "-2.5E+999", "1" * 400 + ".5"):
        body = '{"name": "n", "metadata": {"k": [1, VALUE]}}'.replace("VALUE", value)
        refused = api.post(BASE + "/", body, content_type="application/json")
        assert (refused.status_code, refused.json()["code"]) == (400, "bad_request")
        patch = '{"metadata": {"k": VALUE}}'.replace("VALUE", value)
        refused = api.patch(BASE + "/chat-1", patch, content_type="application/json")
        assert (refused.status_code, refused.json()["code"]) == (400, "bad_request")
    assert Session.objects.count() == 1 and Session.objects.get(name="chat-1").metadata == {}
    # The words inside a string are only text.
    fine = post(api, "/", {"name": "n", "metadata": {"k": "NaN and Infinity"}})
    assert fine.status_code == 201


@pytest.mark.parametrize("debug", [False, True])  # DEBUG turned it into a 500, else HTML
def test_a_body_over_the_upload_limit_is_refused_with_a_code_and_writes_nothing(
    api, session, settings, debug
):
    settings.DEBUG = debug
    huge = json.dumps({"title": "x", "metadata": {"blob": "x" * (10 * 1024 * 1024)}})
    for path in ("/", "/chat-1/events"):
        refused = api.post(BASE + path, huge, content_type="application/json")
        assert (refused.status_code, refused.json()["code"]) == (413, "limit_exceeded"), path
        assert refused.json()["limit"] == "body_bytes"
    assert Session.objects.count() == 1 and entries(session) == 0


def test_a_taken_name_answers_alike_whoever_took_it(api, alice, make_user, settings):
    # Names are one namespace for everyone: a taken name is 409 (it must be), and nothing more
    # is said: not whose it is, nor whether the caller could see it.
    settings.SESSIONS_APP = {"RESERVED_NAME_PREFIXES": ("kept-",)}
    Session.objects.create(name="mine", owner=alice)
    Session.objects.create(name="theirs", owner=make_user("carol"))
    Session.objects.create(name="gone", owner=make_user("dave"), deleted=True)
    answers = {}
    for name in ("mine", "theirs", "gone", "kept-1"):
        reply = post(api, "/", {"name": name})
        answers[name] = (reply.status_code, json.dumps(reply.json()).replace(name, "<name>"))
    assert len(set(answers.values())) == 1 and answers["mine"][0] == 409, answers
    assert Session.objects.count() == 3


def test_unknown_and_inactive_members_answer_alike_without_their_names(
    api, bob, make_user, session
):
    make_user("sleeper").__class__.objects.filter(username="sleeper").update(is_active=False)
    answers = set()
    for name in ("nosuchuser", "sleeper"):
        reply = post(api, "/", {"title": "x", "members": ["bob", name]})
        assert reply.status_code == 400 and name not in reply.content.decode()
        answers.add(reply.content)
        reply = post(api, "/chat-1/members", {"username": name})
        assert reply.status_code == 400 and name not in reply.content.decode()
        answers.add(reply.content)
    assert len(answers) == 1, answers
    assert Session.objects.count() == 1


def test_a_scoped_key_cannot_create_sessions(api, alice, session):
    agent = Client()
    scoped = post(api, "/keys/", {"name": "scoped", "sessions": ["chat-1"]}).json()["key"]
    refused = post(agent, "/", {"title": "x", "members": ["alice"]}, **bearer(scoped))
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert Session.objects.count() == 1
    unscoped = post(api, "/keys/", {"name": "all", "all_sessions": True}).json()["key"]
    assert post(agent, "/", {"title": "x"}, **bearer(unscoped)).status_code == 201


def test_sessions_per_user_have_a_ceiling(api, alice, bob, session, settings):
    settings.SESSIONS_APP = {"MAX_SESSIONS_PER_USER": 2}
    assert post(api, "/", {"title": "second"}).status_code == 201
    refused = post(api, "/", {"title": "third"})
    assert (refused.status_code, refused.json()["code"]) == (413, "limit_exceeded")
    assert refused.json()["limit"] == "sessions_per_user"
    if apps.is_installed("config"):  # the demo site's chat asks the same quota
        chat = api.post("/chat/new/", {"title": "third"})
        assert chat.status_code == 413
    assert Session.objects.filter(owner=alice).count() == 2
    other = Client()
    other.force_login(bob)
    assert post(other, "/", {"title": "bob's"}).status_code == 201
    Session.objects.filter(name="chat-1").update(deleted=True)  # deleted ones do not count
    assert post(api, "/", {"title": "third"}).status_code == 201


def test_writes_without_credentials_answer_401_and_cookie_writes_still_need_csrf(alice, session):
    for headers in ({}, bearer("dsk_nothing_here"), bearer("dsk_abc_def")):
        anonymous = Client(enforce_csrf_checks=True)
        for path, body in (("/", {"title": "x"}), ("/chat-1/events", {"events": [text("x")]})):
            refused = post(anonymous, path, body, **headers)
            assert (refused.status_code, refused.json()["code"]) == (401, "unauthenticated")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    refused = post(browser, "/", {"title": "x"})
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert "CSRF" in refused.json()["message"]
    assert Session.objects.count() == 1 and entries(session) == 0


async def test_a_byte_stream_is_no_session_of_events_at_any_door(alice, bob):
    """A user's Durable Streams byte stream holds the user's bytes. Read as events they failed
    the REST events page, the snapshot and the AG-UI reconnect (500), and a user message sent
    there made a turn whose claim failed, with it, every other user's turn claimed at once."""
    from sessions_app import dispatch
    from sessions_app.access import Actor
    from sessions_app.models import Turn

    raw = await database_sync_to_async(Session.objects.create)(
        name="bytes", owner=alice, content_type="text/plain"
    )
    await database_sync_to_async(log.append_sync)(log.AppendRequest(raw.pk, [log.Item(b"abc")]))
    client = AsyncClient()
    await client.aforce_login(alice)
    refused = [
        await client.get("/api/sessions/bytes/events"),
        await client.get("/api/sessions/bytes/snapshot"),
        await client.post(
            "/api/sessions/bytes/messages", {"text": "hi"}, content_type="application/json"
        ),
        await client.get("/sessions/agui/bytes/connect"),
    ]
    assert [(r.status_code, json.loads(r.content)["code"]) for r in refused] == [
        (404, "not_found")
    ] * 4
    async with connect(alice) as device:
        _, answer = await device.subscribe("bytes")
        assert answer["code"] == "not_found"
    assert await database_sync_to_async(log.read)(raw.pk, 0, 10) == [(1, b"abc")]
    assert not await database_sync_to_async(Turn.objects.exists)()
    # still its owner's to manage and share
    shared = await client.post(
        "/api/sessions/bytes/members", {"username": "bob"}, content_type="application/json"
    )
    assert shared.status_code == 200 and shared.json()["members"] == ["bob"]
    assert (await client.get("/api/sessions/bytes")).status_code == 200
    assert await database_sync_to_async(dispatch.claim)(Actor(alice), ["assistant"], "w", 5) == []
