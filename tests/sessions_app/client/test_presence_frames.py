"""The SDK reads no presence: a merged presence frame (``changes``, issue #25) arriving
between events neither reaches a session's events nor disturbs them."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from sessions_app.client import SessionsClient
from sessions_app.client.session import CAUGHT_UP

pytestmark = pytest.mark.engine_independent

OFFSETS = [f"0000000000000000_{n:016d}" for n in range(1, 4)]
ME = {"id": "d-me", "user": "bot", "label": ""}
PHONE = {"id": "d-phone", "user": "alice", "label": "phone"}


async def _server(ws) -> None:
    await ws.send(json.dumps({"type": "hello", "device": "d-me", "user": "bot"}))
    async for raw in ws:
        frame = json.loads(raw)
        if frame.get("op") != "subscribe":
            continue
        session = frame["session"]
        await ws.send(json.dumps({"type": "caught_up", "id": frame["id"], "session": session,
                                  "offset": OFFSETS[0]}))  # fmt: skip
        event = {"type": "CUSTOM", "offset": OFFSETS[1], "data": {"n": 1}}
        await ws.send(json.dumps({"type": "events", "session": session, "events": [event]}))
        await ws.send(json.dumps({"type": "presence", "session": session, "event": "changes",
                                  "self": ME, "devices": [ME, PHONE], "joined": [PHONE],
                                  "left": [{"id": "d-old", "user": "alice", "label": ""}]}))  # fmt: skip
        event = {"type": "CUSTOM", "offset": OFFSETS[2], "data": {"n": 2}}
        await ws.send(json.dumps({"type": "events", "session": session, "events": [event]}))


async def _follow() -> list[dict]:
    async with websockets.serve(_server, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with SessionsClient(f"http://127.0.0.1:{port}") as client:
            session = await client.session("chat", after="-1", inbox=True)
            got = []
            async for event in session.events():
                got.append(event)
                if len(got) == 3:
                    return got
    return []


def test_a_merged_presence_frame_between_events_is_passed_over():
    got = asyncio.run(asyncio.wait_for(_follow(), 10))
    assert [e["type"] for e in got] == [CAUGHT_UP, "CUSTOM", "CUSTOM"]
    assert [e["data"]["n"] for e in got[1:]] == [1, 2]
