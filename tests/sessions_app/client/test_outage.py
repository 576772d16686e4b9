"""The SDK retries an `unavailable` answer (the database restarting) for about a minute,
however short the backoff it was given: a server here refuses every frame for a second."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from sessions_app.client import SessionsClient
from sessions_app.client.errors import PublishError

pytestmark = pytest.mark.engine_independent

OUTAGE = 1.0  # seconds of `unavailable` answers


async def _server(ws) -> None:
    await ws.send(json.dumps({"type": "hello"}))
    began = None
    async for raw in ws:
        frame = json.loads(raw)
        loop_time = asyncio.get_running_loop().time()
        began = loop_time if began is None else began
        if loop_time - began < OUTAGE:
            reply = {"type": "error", "code": "unavailable", "id": frame["id"]}
        else:
            reply = {
                "type": "ack",
                "id": frame["id"],
                "offsets": ["0000000000000000_0000000000000001"],
            }
        await ws.send(json.dumps(reply))


async def _publish(retry: bool) -> tuple[dict, float]:
    async with websockets.serve(_server, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = SessionsClient(f"http://127.0.0.1:{port}", max_backoff=0.05)
        await client.connect()
        try:
            began = asyncio.get_running_loop().time()
            frame = {"op": "publish", "session": "s", "events": []}
            reply = await (client.request(frame) if retry else client.request(frame, retry=False))
            return reply, asyncio.get_running_loop().time() - began
        finally:
            await client.close()


def test_a_database_restart_longer_than_a_dozen_short_backoffs_is_waited_out():
    reply, waited = asyncio.run(_publish(retry=True))
    assert reply["type"] == "ack"
    assert waited >= OUTAGE


def test_without_retry_the_first_unavailable_is_raised():
    with pytest.raises(PublishError) as refused:
        asyncio.run(_publish(retry=False))
    assert refused.value.code == "unavailable"
