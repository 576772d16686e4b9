"""Closing the SDK client publishes the text its runs still buffer, and a refusal of that
last publish reaches the caller: nothing an agent wrote is dropped without a word."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from sessions_app.client import SessionsClient
from sessions_app.client.errors import PublishError

pytestmark = pytest.mark.engine_independent


def _server(received: list[dict], refuse_text: bool):
    async def serve(ws) -> None:
        await ws.send(json.dumps({"type": "hello"}))
        async for raw in ws:
            frame = json.loads(raw)
            received.append(frame)
            kinds = [e.get("type") for e in frame.get("events", [])]
            if refuse_text and "TEXT_MESSAGE_CONTENT" in kinds:
                reply = {"type": "error", "code": "limit_exceeded", "id": frame["id"],
                         "message": "this stream is full"}  # fmt: skip
            else:
                reply = {"type": "ack", "id": frame["id"],
                         "offsets": ["0000000000000000_0000000000000001"]}  # fmt: skip
            await ws.send(json.dumps(reply))

    return serve


async def _close_with_text_buffered(refuse_text: bool) -> list[dict]:
    received: list[dict] = []
    async with websockets.serve(_server(received, refuse_text), "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        # A long coalescing window: the text is still buffered when the client closes.
        client = SessionsClient(f"http://127.0.0.1:{port}", coalesce_seconds=30)
        await client.connect()
        run = client.writer("s").run(agent="a")
        await run.__aenter__()  # a run that is still open when its agent's client closes
        await run.text("the last words")
        try:
            await client.close()
        finally:
            run._ended = True  # the test's run is not ended by a later __aexit__
    return received


def published_text(frames: list[dict]) -> str:
    return "".join(
        e["data"]["delta"]
        for f in frames
        for e in f.get("events", [])
        if e.get("type") == "TEXT_MESSAGE_CONTENT"
    )


def test_closing_the_client_publishes_the_text_a_run_still_buffers():
    frames = asyncio.run(_close_with_text_buffered(refuse_text=False))
    assert published_text(frames) == "the last words"


def test_a_refused_last_publish_at_close_is_raised_by_close():
    with pytest.raises(PublishError) as refused:
        asyncio.run(_close_with_text_buffered(refuse_text=True))
    assert refused.value.code == "limit_exceeded"
