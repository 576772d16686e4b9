"""Waiting for a session's next commit."""

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
