"""Helpers for the AG-UI and AI SDK door tests: a scripted agent on the log, SSE parsing."""

from __future__ import annotations

import asyncio
import json

from channels.db import database_sync_to_async

from sessions_app import log, services
from sessions_app.models import Entry

db = database_sync_to_async


async def entries(session) -> list[dict]:
    rows = await db(list)(
        Entry.objects.filter(session=session).order_by("seq").values_list("body", flat=True)
    )
    return [json.loads(bytes(body)) for body in rows]


async def publish(session, events) -> None:
    await log.append(services.request(session.pk, events))


def run_events(run="r1", mid="m1", words=("Once ", "upon ", "a ", "time"), end="success"):
    events = [
        {"type": "RUN_STARTED", "run": run, "agent": "writer"},
        {"type": "TEXT_MESSAGE_START", "run": run, "message": mid, "data": {"role": "assistant"}},
    ]
    events += [
        {"type": "TEXT_MESSAGE_CONTENT", "run": run, "message": mid, "data": {"delta": w}}
        for w in words
    ]
    if end:
        events += [
            {"type": "TEXT_MESSAGE_END", "run": run, "message": mid},
            {"type": "RUN_FINISHED", "run": run, "data": {"outcome": end}},
        ]
    return events


async def answer_when_asked(session, events, pause=0.01):
    """A scripted agent: once a user message ends in the session, publish ``events``."""
    for _ in range(500):
        if any(
            e["type"] == "TEXT_MESSAGE_END" and not e.get("run") for e in await entries(session)
        ):
            break
        await asyncio.sleep(0.01)
    for event in events:
        await publish(session, [event])
        await asyncio.sleep(pause)


async def read_sse(response, timeout=10.0) -> list[tuple[str | None, str]]:
    """The (id, data) of each SSE event of a streaming response, comments skipped."""
    text = ""

    async def read():
        nonlocal text
        async for chunk in response.streaming_content:
            text += chunk.decode() if isinstance(chunk, bytes) else chunk

    await asyncio.wait_for(read(), timeout)
    assert "\r" not in text
    frames = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        ids = [line[4:] for line in lines if line.startswith("id: ")]
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        frames.append((ids[0] if ids else None, data))
    return frames
