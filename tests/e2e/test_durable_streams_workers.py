"""Live readers on one worker process wake when another process appends (PostgreSQL + Redis).

Two daphne processes share one database and one Redis channel layer, with a 10 s long-poll
timeout: a reader answered within a couple of seconds was woken by the notification, not by
its timeout. The SSE reader must see every append exactly once, in order, and the final
close.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.e2e.durable_streams.server import ds_servers

pytestmark = [pytest.mark.e2e, pytest.mark.real_engines, pytest.mark.timeout(120)]

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    # A long poll that misses its wake-up answers after 60 s: far from a woken one's time even
    # on a loaded machine.
    extra = {"SESSIONS_ANONYMOUS_STREAM_PREFIX": "", "SESSIONS_LONG_POLL_TIMEOUT": "60"}
    with ds_servers(tmp, 2, **extra) as bases:
        yield bases


def test_a_long_poll_on_one_worker_wakes_on_an_append_to_the_other(two_workers):
    reader, writer = two_workers
    url = "/v1/stream/cross-worker-poll"
    created = httpx.put(writer + url, headers=JSON, content=b"[]")
    assert created.status_code == 201
    # From the stream's tail, not "now": a poll that reaches its worker after the append
    # (a slow machine) still gets it, at once.
    tail = created.headers["Stream-Next-Offset"]

    async def scenario():
        async with httpx.AsyncClient(timeout=90) as client:
            poll = asyncio.create_task(client.get(f"{reader}{url}?offset={tail}&live=long-poll"))
            await asyncio.sleep(0.5)
            started = time.monotonic()
            await client.post(writer + url, headers=JSON, content=b'{"n":1}')
            response = await poll
            return response, time.monotonic() - started

    response, waited = asyncio.run(scenario())
    assert response.status_code == 200 and response.json() == [{"n": 1}]
    assert waited < 30  # woken by the notification through Redis, not the 60 s timeout


def test_an_sse_reader_on_one_worker_follows_appends_and_the_close_on_the_other(two_workers):
    reader, writer = two_workers
    url = "/v1/stream/cross-worker-sse"
    assert httpx.put(writer + url, headers=JSON, content=b"[]").status_code == 201

    async def read_events(client):
        received, text = [], ""
        async with client.stream("GET", reader + url + "?offset=-1&live=sse") as response:
            async for chunk in response.aiter_text():
                text += chunk
                if '"streamClosed":true' in text:
                    break
        for block in text.split("\n\n"):
            if block.startswith("event: data"):
                received.extend(json.loads(block.split("data:", 1)[1]))
        return received

    async def scenario():
        async with httpx.AsyncClient(timeout=15) as client:
            events = asyncio.create_task(read_events(client))
            await asyncio.sleep(0.5)
            for n in range(20):
                await client.post(writer + url, headers=JSON, content=b'{"n":%d}' % n)
                await asyncio.sleep(0.02)
            await client.post(writer + url, headers={**JSON, "Stream-Closed": "true"})
            return await asyncio.wait_for(events, 8)

    assert asyncio.run(scenario()) == [{"n": n} for n in range(20)]
