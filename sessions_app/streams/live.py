"""Waiting for a stream to change, across worker processes.

A live reader joins the stream's groups on a fresh channel of the channel layer, *then* reads
the database, then waits: anything committed after the read is announced to the channel (the
log's ``log.entries`` after each commit, ``stream.changed`` on close and delete). A wake-up is
only a hint: the reader always reads the database again, so a lost, late or repeated
notification costs at most a timeout, never an entry, and nothing uncommitted is delivered.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any

from channels.layers import get_channel_layer

from sessions_app import log
from sessions_app.streams.store import change_group

logger = logging.getLogger(__name__)


class Waiter:
    """``async with Waiter(pk) as waiter: ... await waiter.wait(timeout)``."""

    def __init__(self, session_pk: int) -> None:
        self.groups = (log.group_name(session_pk), change_group(session_pk))
        self.layer: Any = get_channel_layer()
        self.channel: str | None = None

    async def __aenter__(self) -> Waiter:
        if self.layer is not None:
            self.channel = await self.layer.new_channel()
            for group in self.groups:
                await self.layer.group_add(group, self.channel)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.channel is None:
            return
        for group in self.groups:
            try:
                await asyncio.shield(self.layer.group_discard(group, self.channel))
            except Exception:  # the layer forgets idle members itself (group expiry)
                logger.debug("could not leave %s", group, exc_info=True)

    async def wait(self, seconds: float) -> bool:
        """Wait until something is announced or ``seconds`` pass; True if woken."""
        if self.channel is None:
            await asyncio.sleep(seconds)
            return False
        try:
            await asyncio.wait_for(self.layer.receive(self.channel), seconds)
        except TimeoutError:
            return False
        return True
