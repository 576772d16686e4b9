"""Presence on the shared roster: a join storm, devices on two workers, a worker that dies.

The first tests run over the in-process ASGI stack (both passes: in-memory layer, then Redis);
the worker tests start two daphne processes on one Redis and one database (second pass).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack, contextmanager

import pytest
import websockets
from channels.db import database_sync_to_async
from django.test import AsyncClient

from sessions_app.access import mint_token
from tests.e2e.servers import DaphneProcess, session_with_token, site_database
from tests.sessions_app.conftest import add_member, connect

STORM = 12


async def drain(client, quiet: float = 0.5) -> list[dict]:
    """Every frame ``client`` receives until none comes for ``quiet`` seconds."""
    frames: list[dict] = []
    while not await client.ws.receive_nothing(timeout=quiet):
        frames.append(await client.recv())
    return frames


def joins(frames: list[dict]) -> list[str]:
    """The devices ``frames`` told of joining: one ``join`` or the ``joined`` of a ``changes``."""
    told = []
    for frame in frames:
        if frame["type"] == "presence" and frame["event"] == "join":
            told.append(frame["device"]["id"])
        elif frame["type"] == "presence" and frame["event"] == "changes":
            told.extend(d["id"] for d in frame["joined"])
    return told


@pytest.mark.django_db(transaction=True)
async def test_a_join_storm_shows_every_device_to_every_member_exactly_once(alice, session):
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(alice)) for _ in range(STORM)]
        await asyncio.gather(*(c.subscribe("chat-1") for c in clients))
        # What each was listed when it joined, and every join it heard of afterwards.
        lists = [await c.request("presence", session="chat-1") for c in clients]
        heard = await asyncio.gather(*(drain(c) for c in clients))
        everyone = sorted(listed["self"]["id"] for listed in lists)
        assert len(set(everyone)) == STORM
        for listed, frames in zip(lists, heard, strict=True):
            me = listed["self"]["id"]
            shown = [d["id"] for d in listed["devices"]] + joins(frames)
            assert me not in joins(frames)
            assert sorted(set(shown)) == everyone  # nobody missing, nobody else
            # and every device in every list of its frames once
            for frame in [listed, *(f for f in frames if f["type"] == "presence")]:
                ids = [d["id"] for d in frame["devices"]]
                assert ids[0] == me and len(ids) == len(set(ids))
        # Once the storm is over, every member lists every device exactly once.
        for client in clients:
            listed = await client.request("presence", session="chat-1")
            assert sorted(d["id"] for d in listed["devices"]) == everyone


@pytest.mark.django_db(transaction=True)
async def test_a_new_device_is_announced_to_those_there_and_lists_them_without_a_join_each(
    alice, session
):
    async with connect(alice) as first, connect(alice) as second, connect(alice) as third:
        ids = []
        for client in (first, second, third):
            await client.subscribe("chat-1")
            ids.append((await client.request("presence", session="chat-1"))["self"]["id"])
        listed = await third.request("presence", session="chat-1")
        assert [d["id"] for d in listed["devices"]] == [ids[2], ids[0], ids[1]]
        heard = await asyncio.gather(*(drain(c) for c in (first, second, third)))
        # The devices already there each heard of each newcomer once ...
        assert joins(heard[0]) == [ids[1], ids[2]]
        assert joins(heard[1]) == [ids[2]]
        # ... and a newcomer gets no join frame for each device there: its list holds them.
        assert joins(heard[2]) == []


def owners(frame: dict) -> list[tuple[str, str]]:
    return sorted((d["user"], d["id"]) for d in frame["devices"])


@pytest.mark.django_db(transaction=True)
async def test_a_member_who_takes_another_members_device_id_neither_replaces_nor_removes_it(
    alice, bob, session
):
    # A client picks its device id (?device=): bob may pick the one alice's phone uses.
    await database_sync_to_async(add_member)(session, bob)
    phone_token = await database_sync_to_async(mint_token)(alice)
    bob_token = await database_sync_to_async(mint_token)(bob)
    browser = AsyncClient()
    await database_sync_to_async(browser.force_login)(alice)
    async with (
        connect(token=phone_token + "&device=phone") as phone,
        connect(alice) as laptop,
    ):
        await phone.subscribe("chat-1")
        await laptop.subscribe("chat-1")
        laptop_id = (await laptop.request("presence", session="chat-1"))["self"]["id"]
        await drain(phone)
        async with connect(token=bob_token + "&device=phone") as impostor:
            await impostor.subscribe("chat-1")
            listed = await impostor.request("presence", session="chat-1")
            assert listed["self"] == {"id": "phone", "user": "bob", "label": ""}
            assert owners(listed) == [("alice", laptop_id), ("alice", "phone"), ("bob", "phone")]
            # the REST door reads the same roster: both phones, each once
            rest = await browser.get("/api/sessions/chat-1/presence")
            assert owners(rest.json()) == owners(listed)
        heard = await drain(laptop)
        seen = [(f["event"], f["device"]["user"], f["device"]["id"]) for f in heard]
        # bob's device came and went; alice's phone was never announced as gone
        assert seen == [("join", "bob", "phone"), ("leave", "bob", "phone")]
        assert owners(await laptop.request("presence", session="chat-1")) == [
            ("alice", laptop_id),
            ("alice", "phone"),
        ]
        assert [f["event"] for f in await drain(phone)] == ["join", "leave"]
        assert owners(await phone.request("presence", session="chat-1")) == [
            ("alice", laptop_id),
            ("alice", "phone"),
        ]


# --- two workers on one Redis ----------------------------------------------------------------

TTL = 1.5  # seconds: short, so that a dead worker's devices expire within the test
WINDOW = 1.0  # PRESENCE_COALESCE of the two workers


@contextmanager
def two_workers(tmp_path_factory, name: str, settings: dict):
    """Two daphne workers of one site (PostgreSQL, one Redis) with these SESSIONS_APP
    settings, and a token of alice, who owns the session "room"."""
    with site_database(tmp_path_factory.mktemp(name), name) as env:
        env = {**env, "SESSIONS_APP_JSON": json.dumps(settings)}
        token = session_with_token(env, "room", user="alice")
        first, second = DaphneProcess(env), DaphneProcess(env)
        first.start()
        second.start()
        try:
            yield first, second, token
        finally:
            first.__exit__()
            second.__exit__()


@pytest.fixture(scope="module")
def started_workers(tmp_path_factory):
    settings = {"PRESENCE_TTL": TTL, "PRESENCE_COALESCE": WINDOW}
    with two_workers(tmp_path_factory, "presence", settings) as found:
        yield found


@pytest.fixture
def workers(started_workers):
    """The two workers, each serving: one a test killed is started again for the next test
    that asks (not by the test that killed it, when no other may follow)."""
    for worker in started_workers[:2]:
        if worker.proc is None:
            worker.start()
    return started_workers


class Device:
    """A device on one worker: ``device=<name>`` on the socket, every frame it receives kept."""

    def __init__(self, conn) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, worker: DaphneProcess, token: str, name: str) -> Device:
        url = f"ws://127.0.0.1:{worker.port}/ws/sessions/?token={token}&device={name}"
        conn = await websockets.connect(url)
        assert json.loads(await conn.recv())["type"] == "hello"
        return cls(conn)

    async def ask(self, op: str, **fields) -> dict:
        await self.conn.send(json.dumps({"op": op, "id": op, **fields}))
        while True:
            frame = json.loads(await asyncio.wait_for(self.conn.recv(), 10))
            if frame.get("id") == op and frame["type"] != "events":
                return frame

    async def presence(self, timeout: float = 10) -> dict:
        while True:
            frame = json.loads(await asyncio.wait_for(self.conn.recv(), timeout))
            if frame["type"] == "presence":
                return frame


def listed(frame: dict) -> list[str]:
    return [d["id"] for d in frame["devices"]]


@pytest.mark.real_engines
def test_devices_on_two_workers_see_each_other_join_list_and_leave(workers):
    first, second, token = workers

    async def scenario():
        phone = await Device.open(first, token, "phone")
        laptop = await Device.open(second, token, "laptop")
        assert (await phone.ask("subscribe", session="room"))["type"] == "caught_up"
        assert (await laptop.ask("subscribe", session="room"))["type"] == "caught_up"
        # The laptop's worker read the phone from the roster: listed at once, nobody asked.
        assert listed(await laptop.ask("presence", session="room")) == ["laptop", "phone"]
        joined = await phone.presence()
        assert joined["event"] == "join" and joined["device"]["id"] == "laptop"
        assert listed(joined) == ["phone", "laptop"]
        await laptop.conn.close()
        left = await phone.presence()
        assert left["event"] == "leave" and left["device"]["id"] == "laptop"
        assert listed(await phone.ask("presence", session="room")) == ["phone"]
        await phone.conn.close()

    asyncio.run(scenario())


@pytest.mark.real_engines
def test_changes_on_another_worker_within_a_window_reach_a_device_in_one_frame(workers):
    first, second, token = workers

    async def scenario():
        watch = await Device.open(first, token, "watch")
        assert (await watch.ask("subscribe", session="room"))["type"] == "caught_up"
        assert listed(await watch.ask("presence", session="room")) == ["watch"]
        await asyncio.sleep(WINDOW)  # a quiet window
        names = ["c-1", "c-2", "c-3"]
        others = [await Device.open(second, token, name) for name in names]
        # The first join goes out at once; the two that follow within the window, together.
        await others[0].ask("subscribe", session="room")
        joined = await watch.presence()
        assert joined["event"] == "join" and joined["device"]["id"] == "c-1"
        subscribed = await asyncio.gather(*(d.ask("subscribe", session="room") for d in others[1:]))
        assert [frame["type"] for frame in subscribed] == ["caught_up", "caught_up"]
        merged = await watch.presence(timeout=5 * WINDOW)
        assert merged["event"] == "changes" and merged["left"] == []
        assert sorted(d["id"] for d in merged["joined"]) == ["c-2", "c-3"]
        assert listed(merged)[0] == "watch" and sorted(listed(merged)[1:]) == names
        # Three leaves within a window: none is lost, and they come in at most two frames.
        for device in others:
            await device.conn.close()
        frames = [await watch.presence(timeout=5 * WINDOW)]
        while listed(frames[-1]) != ["watch"]:
            frames.append(await watch.presence(timeout=5 * WINDOW))
        assert len(frames) <= 2
        gone = [d["id"] for f in frames for d in (f["left"] if "left" in f else [f["device"]])]
        assert sorted(gone) == names
        await watch.conn.close()

    asyncio.run(scenario())


@pytest.mark.real_engines
def test_the_devices_of_a_worker_killed_without_a_goodbye_leave_after_the_presence_ttl(workers):
    first, second, token = workers

    async def scenario():
        phone = await Device.open(first, token, "phone2")
        tablet = await Device.open(second, token, "tablet")
        assert (await phone.ask("subscribe", session="room"))["type"] == "caught_up"
        assert (await tablet.ask("subscribe", session="room"))["type"] == "caught_up"
        joined = await phone.presence()
        assert joined["device"]["id"] == "tablet"
        second.stop(kill=True)  # SIGKILL: no disconnect, no leave, no more renewals
        left = await phone.presence(timeout=10 * TTL)
        assert left["event"] == "leave" and left["device"]["id"] == "tablet"
        assert listed(left) == ["phone2"]
        assert listed(await phone.ask("presence", session="room")) == ["phone2"]
        await phone.conn.close()

    asyncio.run(scenario())
