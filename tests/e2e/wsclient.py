"""A minimal client of our WebSocket frames over a real socket (the `websockets` library)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
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


class RawSocket:
    """A WebSocket client by hand, so that it can stop reading at will."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/sessions/?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.received = 0

    def send(self, frame: dict) -> None:
        payload = json.dumps(frame).encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def _need(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed without a close frame")
            self.received += len(chunk)
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def frame(self) -> tuple[int, bytes]:
        first, second = self._need(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._need(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._need(8))
        return first & 0x0F, self._need(length)
