"""Baseline: plain Channels fan-out without persistence, speaking our frames.

A minimal consumer: ``subscribe`` joins the session's group; ``publish`` forwards the frame's
events with one ``group_send`` and acks; group messages go to the socket as an ``events``
frame. No validation, no database, no offsets. Serve it with
``daphne bench.plain_channels:application`` (DJANGO_SETTINGS_MODULE=bench.plain_settings).
"""

from __future__ import annotations

import json
import os
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.plain_settings")
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


def group_name(session: str) -> str:
    return "plain." + "".join(c for c in session if c.isalnum() or c in "-_.")[:80]


class FanoutConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.groups_joined: set[str] = set()
        await self.accept()
        await self.send(text_data='{"type":"hello"}')

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame = json.loads(text_data or bytes_data or b"{}")
        op, session = frame.get("op"), str(frame.get("session"))
        if op == "subscribe":
            group = group_name(session)
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)
            reply = {"type": "caught_up", "id": frame.get("id"), "session": session}
            await self.send(text_data=json.dumps(reply))
        elif op == "publish":
            await self.channel_layer.group_send(
                group_name(session),
                {"type": "fanout.events", "session": session, "events": frame["events"]},
            )
            await self.send(text_data=json.dumps({"type": "ack", "id": frame.get("id")}))
        elif op == "ping":
            await self.send(text_data=json.dumps({"type": "pong", "id": frame.get("id")}))

    async def fanout_events(self, message: dict[str, Any]) -> None:
        await self.send(
            text_data=json.dumps(
                {"type": "events", "session": message["session"], "events": message["events"]},
                separators=(",", ":"),
            )
        )


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 to anything (readiness checks)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": URLRouter([path("ws/sessions/", FanoutConsumer.as_asgi())]),
    }
)
