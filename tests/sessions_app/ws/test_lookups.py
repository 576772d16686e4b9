"""Subscribes arriving together on a worker share their database lookups (``ws.lookups``):
each socket still gets its own answer, from a lookup that started after it asked."""

from __future__ import annotations

import asyncio
import threading
from contextlib import AsyncExitStack

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError

from sessions_app import access, log, services
from sessions_app.access import Actor
from sessions_app.domain.errors import NotFound
from sessions_app.log import reads
from sessions_app.models import Membership, Session
from sessions_app.ws import lookups
from tests.sessions_app.conftest import add_member, connect, text

pytestmark = pytest.mark.django_db(transaction=True)


def counting(monkeypatch, module, name: str) -> list[int]:
    """Count the calls of ``module.name`` (from any thread)."""
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


async def answer(client) -> tuple[list[dict], dict]:
    events = []
    while True:
        frame = await client.recv()
        if frame["type"] == "events":
            events.extend(frame["events"])
        elif frame.get("id") == "s" and frame["type"] in ("caught_up", "error"):
            return events, frame


async def test_sockets_subscribing_at_once_share_their_lookups_and_each_gets_its_own_answer(
    alice, bob, make_user, monkeypatch
):
    carol = await database_sync_to_async(make_user)("carol")

    def setup() -> None:
        chat = Session.objects.create(name="chat", owner=alice)
        add_member(chat, bob)
        log.append_sync(services.request(chat.pk, [text(delta=d) for d in "abc"]))

    await database_sync_to_async(setup)()
    checks = counting(monkeypatch, access, "visible_to")  # one by one
    checks_together = counting(monkeypatch, access, "_live_sessions")  # batched
    users = [alice, bob, carol] * 6
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(u)) for u in users]
        for client in clients:
            await client.send({"op": "subscribe", "id": "s", "session": "chat", "after": "-1"})
        answers = await asyncio.gather(*(answer(c) for c in clients))
        for user, (events, last) in zip(users, answers, strict=True):
            if user is carol:  # not a member: told nothing exists, and only her
                assert (events, last["type"], last["code"]) == ([], "error", "not_found")
            else:
                assert [e["data"]["delta"] for e in events] == ["a", "b", "c"]
                assert last["type"] == "caught_up"
        # Not an access check per socket (before: 18). (The replays' reads are shared too,
        # but they follow each socket's join of the session's group, whose round trips to
        # Redis spread them over time: how many calls they take is not fixed.)
        assert len(checks) + len(checks_together) <= 4
        # Carol's sockets are still open and answer.
        assert (await clients[2].request("ping"))["type"] == "pong"


async def test_a_database_error_reaches_every_subscribe_that_shared_the_lookup(alice, monkeypatch):
    await database_sync_to_async(Session.objects.create)(name="chat", owner=alice)

    def down(*args, **kwargs):
        raise OperationalError("the server closed the connection")

    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(alice)) for _ in range(5)]
        with monkeypatch.context() as patched:
            patched.setattr(access, "visible_to", down)
            patched.setattr(access, "_live_sessions", down)
            for client in clients:
                await client.send({"op": "subscribe", "id": "s", "session": "chat"})
            answers = await asyncio.gather(*(answer(c) for c in clients))
        assert [(events, last["code"]) for events, last in answers] == [([], "unavailable")] * 5
        # Nothing of the failure is kept: asked again, each is answered.
        for client in clients:
            await client.send({"op": "subscribe", "id": "s", "session": "chat"})
        answers = await asyncio.gather(*(answer(c) for c in clients))
        assert [last["type"] for _, last in answers] == ["caught_up"] * 5


async def test_an_ask_arriving_while_a_lookup_is_in_flight_waits_for_a_lookup_of_its_own(
    alice, bob, monkeypatch
):
    chat = await database_sync_to_async(Session.objects.create)(name="chat", owner=alice)
    await database_sync_to_async(add_member)(chat, bob)
    looked_up, release = threading.Event(), threading.Event()
    real = access.get_session

    def slow(actor, name):  # the first lookup answers, then is held up on its way back
        found = real(actor, name)
        if not looked_up.is_set():
            looked_up.set()
            release.wait(10)
        return found

    monkeypatch.setattr(access, "get_session", slow)
    first = asyncio.ensure_future(lookups.authorize(Actor(bob), "chat"))
    await asyncio.get_running_loop().run_in_executor(None, looked_up.wait, 10)
    # Bob is removed from the session while the first lookup is on its way back.
    await database_sync_to_async(Membership.objects.filter(user=bob).delete)()
    second = asyncio.ensure_future(lookups.authorize(Actor(bob), "chat"))
    await asyncio.sleep(0.1)
    release.set()
    assert await first == chat.pk  # what was true when it was looked up
    with pytest.raises(NotFound):
        await second  # not the first lookup's answer: it asked after that lookup started


def test_the_same_read_asked_by_several_subscribers_is_read_once(alice, monkeypatch):
    chat = Session.objects.create(name="chat", owner=alice)
    log.append_sync(services.request(chat.pk, [text(delta=d) for d in "abc"]))
    entry_reads = counting(monkeypatch, reads, "read")
    asked = [(chat.pk, 0, 100, None)] * 3 + [(chat.pk, 2, 100, None), (chat.pk, 0, 100, None)]
    found = log.read_many(asked)
    assert [[seq for seq, _ in rows] for rows in found] == [[1, 2, 3]] * 3 + [[3], [1, 2, 3]]
    assert len(entry_reads) == 2
