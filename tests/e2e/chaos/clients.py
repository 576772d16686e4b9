"""Clients of the chaos tests: a subscriber that survives anything, agents, and the checks."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import websockets

from sessions_app.client import SessionsClient
from sessions_app.domain.offsets import parse_offset


class Subscriber:
    """Follows one session through the proxy; reconnects and resumes from its last offset.

    It keeps every event exactly as received (no de-duplication), so duplicates and gaps the
    server produced are visible to the checks.
    """

    def __init__(self, base: str, token: str, session: str) -> None:
        self.url = base.replace("http://", "ws://") + f"/ws/sessions/?token={token}"
        self.session = session
        self.events: list[dict[str, Any]] = []
        self.last = "-1"
        self.reconnects = 0
        self.errors: list[dict[str, Any]] = []
        self.closes: list[int | None] = []
        self.task: asyncio.Task[None] | None = None
        self._stop = False

    def start(self) -> Subscriber:
        self.task = asyncio.ensure_future(self._run())
        return self

    async def stop(self) -> None:
        self._stop = True
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self, deadline: float = 600) -> None:
        ends = time.monotonic() + deadline
        while not self._stop and time.monotonic() < ends:
            try:
                await self._follow()
            except (OSError, TimeoutError, websockets.WebSocketException, json.JSONDecodeError):
                pass
            self.reconnects += 1
            await asyncio.sleep(0.1)

    async def _follow(self) -> None:
        async with websockets.connect(self.url, max_size=2**24, open_timeout=5) as ws:
            hello = json.loads(await ws.recv())
            if hello.get("type") != "hello":
                return
            await ws.send(json.dumps({"op": "subscribe", "id": "s", "session": self.session,
                                      "after": self.last}))  # fmt: skip
            try:
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame["type"] == "events":
                        self.events.extend(frame["events"])
                        self.last = frame["events"][-1]["offset"]
                    elif frame["type"] == "error":
                        self.errors.append(frame)
                        if frame.get("id") == "s":
                            return  # e.g. the database is down: try again
            finally:
                self.closes.append(ws.close_code)

    def values(self) -> list[Any]:
        return [e["data"]["value"] for e in self.events if e["type"] == "CUSTOM"]


async def wait_until(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


class Agent:
    """Publishes CUSTOM events 0, 1, 2, … through the SDK (through the proxy) and records acks."""

    def __init__(self, base: str, key: str, session: str, pause: float = 0.01) -> None:
        self.base, self.key, self.session, self.pause = base, key, session, pause
        self.acked: list[int] = []
        self.failures: list[str] = []
        self.client: SessionsClient | None = None
        self._stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Agent:
        self.client = SessionsClient(self.base, api_key=self.key, max_backoff=0.3)
        await self.client.connect()
        self.handle = await self.client.session(self.session)
        self.task = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        value = 0
        while not self._stop.is_set():
            event = {"type": "CUSTOM", "data": {"name": "tick", "value": value}}
            try:
                await asyncio.wait_for(self.handle.publish([event]), 60)
            except Exception as exc:  # the test decides whether this was allowed
                self.failures.append(f"{value}: {exc!r}")
                return
            self.acked.append(value)
            value += 1
            await asyncio.sleep(self.pause)

    async def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 90)
        if self.client is not None:
            await self.client.close()


def check_exactly_once(events: list[dict[str, Any]], acked: list[int], who: str) -> None:
    """Offsets 1..N with no gap and no repeat; every acknowledged value exactly once, in order."""
    seqs = [parse_offset(e["offset"]) for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"{who}: offsets have a gap or a repeat"
    values = [e["data"]["value"] for e in events if e["type"] == "CUSTOM"]
    repeated = [v for v, n in Counter(values).items() if n > 1]
    assert not repeated, f"{who}: values delivered more than once: {repeated[:10]}"
    missing = set(acked) - set(values)
    assert not missing, f"{who}: acknowledged values missing: {sorted(missing)[:10]}"
    assert values == sorted(values), f"{who}: values out of the order they were published"
