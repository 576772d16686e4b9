"""A minimal client of our WebSocket frames over a real socket (the `websockets` library)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets


class WsClient:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []
        self.last_offset = "-1"
        self.counter = 0

    @classmethod
    async def open(cls, base_http: str, token: str) -> WsClient:
        url = base_http.replace("http://", "ws://") + f"/ws/sessions/?token={token}"
        conn = await websockets.connect(url, max_size=2**24)
        client = cls(conn)
        hello = json.loads(await conn.recv())
        assert hello["type"] == "hello", hello
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(frame))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.conn.recv(), timeout))

    async def publish(
        self, session: str, events: list[dict[str, Any]], producer=None
    ) -> dict[str, Any]:
        self.counter += 1
        frame_id = self.counter
        frame = {"op": "publish", "id": frame_id, "session": session, "events": events}
        if producer is not None:
            frame["producer"] = producer
        await self.send(frame)
        while True:
            reply = await self.recv()
            if reply.get("id") == frame_id:
                return reply

    async def subscribe(self, session: str, after: str | None = None) -> dict[str, Any]:
        await self.send(
            {"op": "subscribe", "id": "sub", "session": session, "after": after or self.last_offset}
        )
        while True:
            frame = await self.recv()
            self.take(frame)
            if frame.get("id") == "sub" and frame["type"] in ("caught_up", "error"):
                return frame

    def take(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "events":
            self.events.extend(frame["events"])
            self.last_offset = frame["events"][-1]["offset"]

    async def follow_until(self, count: int, timeout: float = 60) -> None:
        async def loop() -> None:
            while len(self.events) < count:
                self.take(await self.recv(timeout))

        await asyncio.wait_for(loop(), timeout)

    async def close(self) -> None:
        await self.conn.close()

    async def quiet_for(self, seconds: float) -> bool:
        """True when no further events arrive within ``seconds``."""
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(self.conn.recv(), seconds))
                if frame["type"] == "events":
                    self.take(frame)
                    return False
        except TimeoutError:
            return True
