"""Claims over a worker's WebSocket (the ``claim`` frame): the REST door's claim, refused to
browsers, validated, one at a time per socket, and never taking a turn the key may not."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from sessions_app import keys, log, services
from sessions_app.domain import control
from sessions_app.models import Session, Turn
from tests.sessions_app.conftest import connect, text

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


def key_headers(secret: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {secret}".encode())]


@db
def ask(owner, name: str, agent: str = "a") -> Session:
    session, _ = Session.objects.get_or_create(
        name=name, owner=owner, defaults={"metadata": {"turns": {"agent": agent}}}
    )
    _, events = control.user_message("hello")
    log.append_sync(services.request(session.pk, events))
    return session


@db
def states() -> dict[str, str]:
    return {t.session.name: t.state for t in Turn.objects.select_related("session")}


@pytest.fixture
def worker_key(make_user):
    return keys.create_key(make_user("robot"), "workers", agents="a")


async def test_a_worker_key_claims_over_its_socket_and_other_frames_go_on_while_it_waits(
    alice, worker_key
):
    key, secret = worker_key
    await ask(alice, "first")
    async with connect(headers=key_headers(secret)) as worker:
        got = await worker.request("claim", agents=["a"], worker="w1", limit=5)
        assert got["type"] == "turns"
        assert [(t["session"], t["attempt"], t["text"]) for t in got["turns"]] == [
            ("first", 1, "hello")
        ]
        # A claim that waits: the socket still answers, and a new turn wakes the claim.
        await worker.send({"op": "claim", "id": "later", "agents": ["a"], "worker": "w1",
                           "wait": 30})  # fmt: skip
        assert (await worker.request("ping"))["type"] == "pong"
        await ask(alice, "second")
        woken = await worker.recv_type("turns", timeout=20)
        assert woken["id"] == "later" and [t["session"] for t in woken["turns"]] == ["second"]
    claimed = await db(lambda: set(Turn.objects.values_list("key_id", "worker")))()
    assert claimed == {(key.pk, "w1")}


async def test_a_socket_without_an_api_key_may_not_claim_and_claims_nothing(alice):
    await ask(alice, "mine")
    async with connect(alice) as browser:  # a signed token, as browsers open sockets
        refused = await browser.request("claim", agents=["a"], worker="w1")
        assert refused["type"] == "error" and refused["code"] == "forbidden"
    assert await states() == {"mine": "queued"}


async def test_a_key_claims_only_what_its_scope_reaches(alice, bob, make_user):
    await ask(alice, "alices")
    await ask(bob, "bobs", agent="b")
    robot2 = await db(make_user)("robot2")
    _, other_agents = await db(keys.create_key)(robot2, "w", agents="x,b")
    _, bobs_own = await db(keys.create_key)(bob, "own", all_sessions=True)
    quiet = await db(Session.objects.create)(name="quiet", owner=alice)
    _, elsewhere = await db(keys.create_key)(alice, "scoped elsewhere", [quiet])
    for secret, agents in ((other_agents, ["a"]), (bobs_own, ["a"]), (elsewhere, ["a", "b"])):
        async with connect(headers=key_headers(secret)) as worker:
            got = await worker.request("claim", agents=agents, worker="w")
            assert got == {"type": "turns", "id": got["id"], "turns": []}
    assert await states() == {"alices": "queued", "bobs": "queued"}
    async with connect(headers=key_headers(bobs_own)) as own:
        got = await own.request("claim", agents=["a", "b"], worker="w")
        assert [t["session"] for t in got["turns"]] == ["bobs"]  # a user's key: their own
    assert await states() == {"alices": "queued", "bobs": "claimed"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"worker": "w"}, "agents"),
        ({"agents": "a", "worker": "w"}, "agents"),
        ({"agents": [], "worker": "w"}, "agents"),
        ({"agents": ["a"]}, "worker"),
        ({"agents": ["a"], "worker": "w", "limit": 0}, "limit"),
        ({"agents": ["a"], "worker": "w", "limit": "many"}, "limit"),
        ({"agents": ["a"], "worker": "w", "wait": -1}, "wait"),
        ({"agents": ["a"], "worker": "w", "wait": 61}, "wait"),
        ({"agents": [{"a": 1}], "worker": "w"}, "agents.0"),
        ({"agents": ["a"], "worker": "x" * 201}, "worker"),
    ],
)
async def test_a_malformed_claim_is_refused_with_its_field_and_claims_nothing(
    alice, worker_key, fields, field
):
    await ask(alice, "waiting")
    _, secret = worker_key
    async with connect(headers=key_headers(secret)) as worker:
        refused = await worker.request("claim", **fields)
        assert refused["type"] == "error" and refused["code"] == "bad_request"
        assert refused["field"] == field
        assert (await worker.request("ping"))["type"] == "pong"  # the socket goes on
    assert await states() == {"waiting": "queued"}


async def test_one_claim_waits_at_a_time_on_a_socket(worker_key):
    _, secret = worker_key
    async with connect(headers=key_headers(secret)) as worker:
        await worker.send({"op": "claim", "id": "one", "agents": ["a"], "worker": "w", "wait": 30})
        second = await worker.request("claim", agents=["a"], worker="w", wait=30)
        assert second["type"] == "error" and second["code"] == "conflict"


async def test_a_key_revoked_while_its_claim_waits_closes_the_socket_and_claims_nothing(
    alice, worker_key
):
    key, secret = worker_key
    async with connect(headers=key_headers(secret)) as worker:
        await worker.send({"op": "claim", "id": "c", "agents": ["a"], "worker": "w", "wait": 30})
        await worker.send({"op": "ping", "id": "p"})
        assert await worker.recv_type("pong", "turns", "error") == {"type": "pong", "id": "p"}
        await db(keys.revoke)(key)
        while (message := await worker.ws.receive_output(10))["type"] != "websocket.close":
            assert '"turns"' not in message.get("text", "")
        assert message["code"] == 4401
    await ask(alice, "after")
    assert await states() == {"after": "queued"}


async def test_a_look_that_ends_after_its_key_was_revoked_hands_its_turns_back(alice, worker_key):
    """A look for turns starts with the credential as it is; if the key is revoked before the
    look ends (under load, a look can wait on the database), what it took goes back to the
    queue at once instead of to a closed connection until its lease runs out."""
    from django.contrib.auth.models import AnonymousUser

    from sessions_app import credentials, dispatch
    from sessions_app.access import Actor

    _, secret = worker_key
    valid = await db(credentials.actor_for_key)(secret)
    await ask(alice, "mid")
    asked: list[Actor] = []

    def actor() -> Actor:  # the socket's credential at each ask: revoked during the first look
        asked.append(valid if not asked else Actor(AnonymousUser()))
        return asked[-1]

    assert await dispatch.claim_waiting(actor, ["a"], "w", 4, 0) == []
    assert await states() == {"mid": "queued"}


async def test_a_stopped_claim_answers_at_once_and_claims_nothing_after(alice, worker_key):
    _, secret = worker_key
    async with connect(headers=key_headers(secret)) as worker:
        await worker.send({"op": "claim", "id": "c", "agents": ["a"], "worker": "w", "wait": 30})
        stopped = await worker.request("stop_claim")
        assert stopped["type"] == "claim_stopped" and stopped["waiting"] is True
        ended = await worker.recv_type("turns", timeout=10)  # not after the claim's 30 s
        assert ended == {"type": "turns", "id": "c", "turns": []}
        await ask(alice, "after")
        assert await worker.nothing_more(0.5)
        assert await states() == {"after": "queued"}
        again = await worker.request("claim", agents=["a"], worker="w", wait=30)
        assert [t["session"] for t in again["turns"]] == ["after"]  # a new claim works


async def test_a_claims_answer_publishes_without_looking_the_session_up_again(
    alice, worker_key, make_user, monkeypatch
):
    """The claim has just established what an answer's first publish would ask (a claimed
    turn of this key in a live session): the publish, on any socket of the key, lands without
    that query. Another worker key holds no turn there and is refused as before."""
    from sessions_app import access

    lookups = []
    real = access._held_session

    def counted(key, name):
        lookups.append((key, name))
        return real(key, name)

    monkeypatch.setattr(access, "_held_session", counted)
    key, secret = worker_key
    await ask(alice, "asked")
    robot2 = await db(make_user)("robot2")
    _, other = await db(keys.create_key)(robot2, "other workers", agents="a")
    async with connect(headers=key_headers(secret)) as claimer:
        got = await claimer.request("claim", agents=["a"], worker="w1", limit=1)
        (turn,) = got["turns"]
        started = {"type": "RUN_STARTED", "run": turn["run_id"], "agent": "a",
                   "data": {"turn": turn["id"]}}  # fmt: skip
        async with connect(headers=key_headers(secret)) as answerer:  # the worker's 2nd socket
            ack = await answerer.publish("asked", [started])
            assert ack["type"] == "ack", ack
        assert lookups == []
        async with connect(headers=key_headers(other)) as stranger:
            refused = await stranger.publish("asked", [text(run=turn["run_id"])])
            assert refused["type"] == "error" and refused["code"] == "not_found"
    runs = await db(lambda: list(Turn.objects.values_list("run_id", "state")))()
    assert runs == [(turn["run_id"], "claimed")]


@override_settings(SESSIONS_APP={"ACCESS_RECHECK_SECONDS": 0.2})
async def test_a_claims_grant_ends_at_the_sockets_next_access_check(alice, worker_key):
    """A turn taken from the worker after the claim (by an update no signal announces): once
    the socket's periodic access check has run, a publish is refused as the lookup refuses it
    (the key holds no turn there any more)."""
    key, secret = worker_key
    await ask(alice, "gone")
    async with connect(headers=key_headers(secret)) as worker:
        (turn,) = (await worker.request("claim", agents=["a"], worker="w1", limit=1))["turns"]
        await db(Turn.objects.filter(pk=turn["id"]).update)(state="abandoned")
        await asyncio.sleep(1.0)  # several checks of this socket
        refused = await worker.publish("gone", [text(run=turn["run_id"])])
        assert refused["type"] == "error" and refused["code"] == "not_found"


@db
def leases() -> dict[str, tuple[str, object]]:
    return {
        t.session.name: (t.state, t.lease_until) for t in Turn.objects.select_related("session")
    }


async def test_a_worker_renews_and_hands_back_its_turns_over_its_socket(alice, worker_key):
    """The REST door's renew and release as frames of the claiming socket: only the turns
    this worker holds are renewed; a release offers the turn again."""
    _, secret = worker_key
    await ask(alice, "kept")
    await ask(alice, "returned")
    async with connect(headers=key_headers(secret)) as worker:
        got = await worker.request("claim", agents=["a"], worker="w1", limit=5)
        ids = {t["session"]: t["id"] for t in got["turns"]}
        before = await leases()
        await asyncio.sleep(0.05)
        renewed = await worker.request("renew", worker="w1", turns=[ids["kept"], 999_999])
        assert renewed == {"type": "renewed", "id": renewed["id"], "held": [ids["kept"]]}
        elsewhere = await worker.request("renew", worker="w2", turns=[ids["returned"]])
        assert elsewhere["held"] == []  # another worker name holds nothing here
        after = await leases()
        assert after["kept"][1] > before["kept"][1]
        assert after["returned"] == before["returned"]
        released = await worker.request("release", worker="w1", turn=ids["returned"])
        assert released["type"] == "released" and released["released"] is True
        again = await worker.request("release", worker="w1", turn=ids["returned"])
        assert again["released"] is False  # not held any more
    assert await states() == {"kept": "claimed", "returned": "queued"}


@pytest.mark.parametrize(
    ("op", "fields", "field"),
    [
        ("renew", {"turns": [1]}, "worker"),
        ("renew", {"worker": "w"}, "turns"),
        ("renew", {"worker": "w", "turns": ["x"]}, "turns.0"),
        ("renew", {"worker": "w", "turns": [0]}, "turns.0"),
        ("renew", {"worker": "w", "turns": [2**63]}, "turns.0"),
        ("renew", {"worker": "w", "turns": list(range(1, 502))}, "turns"),
        ("release", {"worker": "w"}, "turn"),
        ("release", {"worker": "w", "turn": -1}, "turn"),
        ("release", {"worker": "x" * 201, "turn": 1}, "worker"),
    ],
)
async def test_a_malformed_renew_or_release_is_refused_with_its_field_and_changes_nothing(
    alice, worker_key, op, fields, field
):
    _, secret = worker_key
    await ask(alice, "held")
    async with connect(headers=key_headers(secret)) as worker:
        await worker.request("claim", agents=["a"], worker="w", limit=1)
        before = await leases()
        refused = await worker.request(op, **fields)
        assert refused["type"] == "error" and refused["code"] == "bad_request"
        assert refused["field"] == field
        assert (await worker.request("ping"))["type"] == "pong"  # the socket goes on
    assert await leases() == before


async def test_a_socket_without_an_api_key_may_not_renew_or_release(alice, worker_key):
    _, secret = worker_key
    await ask(alice, "held")
    async with connect(headers=key_headers(secret)) as worker:
        (turn,) = (await worker.request("claim", agents=["a"], worker="w", limit=1))["turns"]
    before = await leases()
    async with connect(alice) as browser:
        for op, fields in (("renew", {"turns": [turn["id"]]}), ("release", {"turn": turn["id"]})):
            refused = await browser.request(op, worker="w", **fields)
            assert refused["type"] == "error" and refused["code"] == "forbidden"
    assert await leases() == before


async def test_a_revoked_key_neither_renews_nor_hands_back_its_turns(alice, worker_key):
    """Its sockets close at the revocation; a renewal or release already on its way (or one
    over the REST door with the actor it authenticated a moment before) changes nothing."""
    from sessions_app import credentials, dispatch

    key, secret = worker_key
    await ask(alice, "held")
    who = await db(credentials.actor_for_key)(secret)
    (taken,) = await dispatch.claim_waiting(lambda: who, ["a"], "w", 1, 0)
    before = await leases()
    await db(keys.revoke)(key)
    assert await db(dispatch.renew)(who, "w", [taken.turn.pk]) == []
    assert await db(dispatch.release)(who, "w", taken.turn.pk) is False
    assert await leases() == before
