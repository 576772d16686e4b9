"""Presence frames coalesced (issue #25): at most one frame per socket and session per
``PRESENCE_COALESCE`` window, the first change after a quiet window at once.

Over the in-process ASGI stack: the in-memory layer in the first pass, Redis in the second.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

import pytest
from django.test import override_settings

from tests.sessions_app.conftest import connect
from tests.sessions_app.ws.test_presence import drain, joins


def ids(devices: list[dict]) -> list[str]:
    return sorted(d["id"] for d in devices)


def presence(frames: list[dict]) -> list[dict]:
    return [f for f in frames if f["type"] == "presence"]


async def device_of(client) -> str:
    return (await client.request("presence", session="chat-1"))["self"]["id"]


@pytest.mark.django_db(transaction=True)
@override_settings(SESSIONS_APP={"PRESENCE_COALESCE": 2.0})
async def test_joins_within_a_window_reach_each_member_as_one_merged_frame(alice, session):
    async with AsyncExitStack() as stack:
        watchers = [await stack.enter_async_context(connect(alice)) for _ in range(2)]
        for watcher in watchers:
            await watcher.subscribe("chat-1")
        mine = [await device_of(w) for w in watchers]
        await asyncio.gather(*(drain(w, quiet=2.5) for w in watchers))  # a quiet window
        # The first change after a quiet window goes out at once, as a join of its own ...
        first = await stack.enter_async_context(connect(alice))
        await first.subscribe("chat-1")
        for watcher in watchers:
            frame = await watcher.recv_type("presence")
            assert frame["event"] == "join" and frame["device"]["id"] == await device_of(first)
        # ... the joins that follow within the window are one frame at its end, for each member.
        storm = [await stack.enter_async_context(connect(alice)) for _ in range(4)]
        await asyncio.gather(*(c.subscribe("chat-1") for c in storm))
        newcomers = [await device_of(c) for c in storm]
        everyone = sorted([*mine, await device_of(first), *newcomers])
        heard = await asyncio.gather(*(drain(w, quiet=4.5) for w in watchers))
        for me, frames in zip(mine, heard, strict=True):
            frames = presence(frames)
            assert len(frames) == 1, frames
            merged = frames[0]
            assert merged["event"] == "changes"
            assert ids(merged["joined"]) == sorted(newcomers) and merged["left"] == []
            assert merged["self"]["id"] == me and merged["devices"][0]["id"] == me
            assert ids(merged["devices"]) == everyone


@pytest.mark.django_db(transaction=True)
@override_settings(SESSIONS_APP={"PRESENCE_COALESCE": 5.0})
async def test_a_lone_join_arrives_at_once_and_the_next_one_waits_for_the_window(alice, session):
    async with connect(alice) as watcher, connect(alice) as lone, connect(alice) as next_one:
        await watcher.subscribe("chat-1")
        await drain(watcher)
        started = time.monotonic()
        await lone.subscribe("chat-1")
        frame = await watcher.recv_type("presence")
        assert frame["event"] == "join" and frame["device"]["id"] == await device_of(lone)
        assert time.monotonic() - started < 2.5  # not held for the 5 s window
        await next_one.subscribe("chat-1")
        assert await watcher.nothing_more(timeout=2.0)  # held: within the window of the first
        frame = await watcher.recv_type("presence", timeout=10)
        assert frame["event"] == "join" and frame["device"]["id"] == await device_of(next_one)
        assert time.monotonic() - started >= 5.0
        assert len(frame["devices"]) == 3


@pytest.mark.django_db(transaction=True)
@override_settings(SESSIONS_APP={"PRESENCE_COALESCE": 4.0})
async def test_a_leave_within_a_window_is_told_and_a_device_that_came_and_went_is_not_listed(
    alice, session
):
    # A window of 4 s: the leave and the brief visit below must fall in one window even on a
    # loaded CI machine; and the watcher waits out the window its first join opened, so that
    # the next join is told at once.
    async with connect(alice) as watcher, connect(alice) as leaving:
        await watcher.subscribe("chat-1")
        await leaving.subscribe("chat-1")
        gone = await device_of(leaving)
        await drain(watcher, quiet=4.5)
        async with connect(alice) as staying:
            await staying.subscribe("chat-1")  # the first change: told at once
            assert (await watcher.recv_type("presence"))["event"] == "join"
            # Within the window: a device leaves, another comes and goes.
            await leaving.ws.disconnect()
            async with connect(alice) as brief:
                await brief.subscribe("chat-1")
                fleeting = await device_of(brief)
            frames = presence(await drain(watcher, quiet=4.5))
            assert len(frames) == 1, frames
            merged = frames[0]
            assert merged["event"] == "changes" and merged["joined"] == []
            assert ids(merged["left"]) == sorted([gone, fleeting])
            assert ids(merged["devices"]) == sorted(
                [await device_of(watcher), await device_of(staying)]
            )
            listed = await watcher.request("presence", session="chat-1")
            assert ids(listed["devices"]) == ids(merged["devices"])


@pytest.mark.django_db(transaction=True)
@override_settings(SESSIONS_APP={"PRESENCE_COALESCE": 0})
async def test_with_the_window_at_zero_every_join_and_leave_is_a_frame_of_its_own(alice, session):
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(connect(alice))
        await watcher.subscribe("chat-1")
        await drain(watcher)
        storm = [await stack.enter_async_context(connect(alice)) for _ in range(4)]
        await asyncio.gather(*(c.subscribe("chat-1") for c in storm))
        newcomers = [await device_of(c) for c in storm]
        frames = presence(await drain(watcher))
        assert [f["event"] for f in frames] == ["join"] * 4
        assert sorted(joins(frames)) == sorted(newcomers)
        assert all("joined" not in f and "left" not in f for f in frames)
        await storm[0].ws.disconnect()
        left = await watcher.recv_type("presence")
        assert left["event"] == "leave" and left["device"]["id"] == newcomers[0]
