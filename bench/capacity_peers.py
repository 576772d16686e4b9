"""The capacity bench's SSE peers: resumable-stream (Node) and django-eventstream.

bench/capacity.py's docstring says how each is set up and driven; this module holds their
agents, devices and the Node server's start-up. Devices here are ``capacity.Device`` with an
SSE reader instead of a WebSocket one, so order, loss and latency are counted alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.capacity import COALESCE_SECONDS, Device, PlainRun, Tape
from bench.sessions_log import ROOT, Server, spawned
from bench.sse import SseReader
from tests.e2e.servers import free_port

NODE_DIR = ROOT / "bench" / "resumable"
RESUME_POLL_SECONDS = 0.05  # a device with no answer to follow asks again after this long
HTTP_TIMEOUT = 60.0


def _client(connections: int = 4) -> Any:
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=HTTP_TIMEOUT, limits=limits)


# --- resumable-stream (peer b) ---------------------------------------------------------------


class ResumableAgent:
    """An agent on the Node server: each answer is one POST whose body streams the model's
    output as the AI SDK's UI message stream chunks, one JSON line per coalesced batch."""

    def __init__(self, server: Server, session: str) -> None:
        self.url = f"{server.base}/chat/{session}"
        self.client: Any = None

    async def connect(self) -> None:
        self.client = _client()

    def run(self) -> ResumableRun:
        return ResumableRun(self)

    async def close(self) -> None:
        await self.client.aclose()


class ResumableRun:
    """``Run.text`` with the SDK's ~30 ms coalescing; each batch is one write of the body."""

    def __init__(self, agent: ResumableAgent) -> None:
        self.agent = agent
        self.message: str | None = None
        self.buffer: list[str] = []
        self.flusher: asyncio.Task[None] | None = None
        self.lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.post: asyncio.Task[Any] | None = None

    def send(self, *chunks: dict[str, Any]) -> None:
        self.lines.put_nowait(b"".join(json.dumps(c).encode() + b"\n" for c in chunks))

    async def body(self) -> AsyncIterator[bytes]:
        while (line := await self.lines.get()) is not None:
            yield line

    async def __aenter__(self) -> ResumableRun:
        self.send({"type": "start", "messageId": f"msg-{uuid.uuid4().hex[:10]}"})
        self.post = asyncio.create_task(self.agent.client.post(self.agent.url, content=self.body()))
        return self

    async def text(self, delta: str) -> None:
        if self.message is None:
            self.message = f"t-{uuid.uuid4().hex[:10]}"
            self.send({"type": "text-start", "id": self.message})
        self.buffer.append(delta)
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self.flush_later())

    async def flush_later(self) -> None:
        await asyncio.sleep(COALESCE_SECONDS)
        self.flush()

    def flush(self) -> None:
        if self.buffer:
            delta, self.buffer = "".join(self.buffer), []
            self.send({"type": "text-delta", "id": self.message, "delta": delta})

    async def __aexit__(self, *exc: object) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
        self.flush()
        if self.message is not None:
            self.send({"type": "text-end", "id": self.message})
        self.send({"type": "finish"})
        self.lines.put_nowait(None)
        assert self.post is not None
        response = await self.post
        response.raise_for_status()


@dataclass
class ResumableDevice(Device):
    """A device following a chat the way the AI SDK's resume route allows: GET the chat's
    stream; 204 (no answer streaming) -> ask again after RESUME_POLL_SECONDS; an answer's
    stream ends -> GET again for the next one. A resumed stream starts at the answer's start."""

    url: str = ""

    async def follow(self) -> None:
        while True:
            async with self.conn.stream("GET", self.url) as response:
                if response.status_code == 204:
                    await asyncio.sleep(RESUME_POLL_SECONDS)
                    continue
                response.raise_for_status()
                reader = SseReader()
                async for piece in response.aiter_text():
                    now = time.perf_counter()
                    for event in reader.feed(piece):
                        if event.data.startswith("{"):
                            chunk = json.loads(event.data)
                            if chunk.get("type") == "text-delta":
                                self.take(chunk["delta"], now)
                    self.progress.set()


@contextmanager
def node_server(env: dict[str, str]) -> Iterator[Server]:
    """bench/resumable/server.mjs on a free loopback port (``npm ci`` there first if needed)."""
    if shutil.which("node") is None:
        raise SystemExit("the resumable peer needs Node (node and npm on PATH)")
    if not (NODE_DIR / "node_modules" / "resumable-stream").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)
    port = free_port()
    argv = ["node", "server.mjs", str(port)]
    with spawned(argv, port, "resumable", cwd=NODE_DIR, env=env, complain="Error") as server:
        yield server


def forget_keys(redis_url: str, prefix: str) -> None:
    """Delete the keys resumable-stream left (it keeps each stream's sentinel for 24 h)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    finally:
        client.close()


# --- django-eventstream (peer c) -------------------------------------------------------------


class EventstreamAgent:
    """An agent on django-eventstream: the SDK's events and ~30 ms coalescing (``PlainRun``),
    each batch one POST to a view that calls ``send_event`` per event; one POST in flight."""

    def __init__(self, server: Server, session: str) -> None:
        self.url = f"{server.base}/publish/{session}/"
        self.client: Any = None

    async def connect(self) -> None:
        self.client = _client()

    async def publish(self, events: list[dict[str, Any]]) -> None:
        response = await self.client.post(self.url, json={"events": events})
        response.raise_for_status()

    def run(self) -> PlainRun:
        return PlainRun(self)  # type: ignore[arg-type]  # it only calls publish()

    async def close(self) -> None:
        await self.client.aclose()


@dataclass
class EventstreamDevice(Device):
    """An SSE subscriber of the session's channel, from now (no Last-Event-ID)."""

    url: str = ""
    response: Any = None
    pieces: Any = None
    reader: SseReader | None = None

    async def open(self) -> None:
        """Returns once the stream is open (its ``stream-open`` event came)."""
        request = self.conn.build_request("GET", self.url)
        self.response = await self.conn.send(request, stream=True)
        self.response.raise_for_status()
        self.pieces, self.reader = self.response.aiter_text(), SseReader()
        async for piece in self.pieces:
            if any(e.event == "stream-open" for e in self.reader.feed(piece)):
                return
        raise RuntimeError("django-eventstream closed the stream before opening it")

    async def follow(self) -> None:
        assert self.reader is not None
        async for piece in self.pieces:
            now = time.perf_counter()
            for event in self.reader.feed(piece):
                if event.event == "message":
                    data = json.loads(event.data)
                    if data.get("type") == "TEXT_MESSAGE_CONTENT":
                        self.take(data["data"]["delta"], now)
            self.progress.set()


async def open_sse_device(system: str, server: Server, session: str, tape: Tape) -> Device:
    if system == "resumable":
        return ResumableDevice(_client(2), tape, url=f"{server.base}/chat/{session}/stream")
    device = EventstreamDevice(_client(2), tape, url=f"{server.base}/events/{session}/")
    await device.open()
    return device


async def close_device(device: Device) -> None:
    if isinstance(device, EventstreamDevice) and device.response is not None:
        with contextlib.suppress(Exception):
            await device.response.aclose()
    close = getattr(device.conn, "aclose", None) or device.conn.close
    await close()


def node_env(redis_url: str, prefix: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "RS_KEY_PREFIX": prefix}
