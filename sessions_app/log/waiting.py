"""Waiting for a session's next commit, and asking its subscribers which devices they are."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer

from sessions_app.log.fanout import group_name

logger = logging.getLogger("sessions_app.log")


class Waiter:
    """Wait for a session's next commit: ``async with Waiter(pk) as w: ...; await w.wait(t)``.

    Join before you read, read, then wait: a commit after the read wakes the waiter. A wake-up
    is only a hint; read the database again after it (a lost one costs a timeout, not data).
    """

    def __init__(self, session_pk: int, *groups: str) -> None:
        self.groups = (group_name(session_pk), *groups)
        self.layer: Any = get_channel_layer()
        self.channel: str | None = None

    async def __aenter__(self) -> Waiter:
        if self.layer is not None:
            self.channel = await self.layer.new_channel()
            for group in self.groups:
                await self.layer.group_add(group, self.channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.channel is None:
            return
        for group in self.groups:
            try:
                await asyncio.shield(self.layer.group_discard(group, self.channel))
            except Exception:  # the layer forgets idle members by itself (group expiry)
                logger.debug("could not leave %s", group, exc_info=True)

    async def wait(self, seconds: float) -> bool:
        """Wait for an announcement or ``seconds``; True when woken."""
        if self.channel is None:
            await asyncio.sleep(seconds)
            return False
        try:
            await asyncio.wait_for(self.layer.receive(self.channel), seconds)
        except TimeoutError:
            return False
        return True


PRESENCE_QUIET = 0.25  # seconds without a new answer before the list is complete


async def attached_devices(session_pk: int, limit: float = 1.0) -> list[dict[str, Any]]:
    """Ask every subscriber of the session, on every worker, which device it is."""
    layer = get_channel_layer()
    if layer is None:
        return []
    channel = await layer.new_channel()
    await layer.group_send(group_name(session_pk), {"type": "presence.query", "session": session_pk,
                                                    "reply_to": channel})  # fmt: skip
    devices: dict[str, dict[str, Any]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while (left := deadline - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(layer.receive(channel), min(PRESENCE_QUIET, left))
        except TimeoutError:
            break
        device = message.get("device")
        if isinstance(device, dict) and "id" in device:
            devices[device["id"]] = device
    return sorted(devices.values(), key=lambda d: d["id"])
