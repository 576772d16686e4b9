"""Flow control of one socket: what the server holds for a client that reads slowly, and
closing (4008) one that stopped reading; plus the frames its subscribers share."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, NoReturn

from channels.exceptions import StopConsumer

from sessions_app import metrics
from sessions_app.backpressure import buffered_bytes, send_may_block
from sessions_app.conf import setting
from sessions_app.domain.errors import SlowConsumer

logger = logging.getLogger(__name__)

DRAIN_POLL_SECONDS = 0.02
CLOSE_SLOW_CONSUMER = SlowConsumer.close_code


class Flow:
    """The backlog of one consumer's socket (``consumer.base_send``) against
    ``MAX_BUFFERED_BYTES``, and its patience with a client that takes nothing."""

    __slots__ = ("consumer", "cut", "patience")

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.cut = False
        # A server whose send waits for the client (uvicorn does, daphne buffers instead) gets
        # the same patience per send as a backlog gets in make_room.
        self.patience: float | None = (
            setting("SLOW_CONSUMER_TIMEOUT") if send_may_block(consumer.base_send) else None
        )

    def over_limit(self) -> bool:
        queued = buffered_bytes(self.consumer.base_send)
        return queued is not None and queued > setting("MAX_BUFFERED_BYTES")

    async def make_room(self) -> None:
        """Wait while the client's backlog is over the limit; cut a client that stopped reading.

        A client that reads, however slowly, is waited for (replaying a large backlog must not
        look like a stall): each byte it takes restarts the patience. One that takes nothing
        for ``SLOW_CONSUMER_TIMEOUT`` seconds is closed with 4008, so what the server holds
        for a socket stays below the limit plus one frame.
        """
        base_send = self.consumer.base_send
        limit = setting("MAX_BUFFERED_BYTES")
        queued = buffered_bytes(base_send)
        if queued is None or queued <= limit:
            return
        loop = asyncio.get_running_loop()
        patience = setting("SLOW_CONSUMER_TIMEOUT")
        deadline = loop.time() + patience
        while queued is not None and queued > limit:
            if loop.time() >= deadline:
                await self.cut_off(f"{queued} bytes queued")
            await asyncio.sleep(DRAIN_POLL_SECONDS)
            now = buffered_bytes(base_send)
            if now is not None and now < queued:
                deadline = loop.time() + patience
            queued = now

    async def cut_off(self, why: str) -> NoReturn:
        """Close a client that stopped reading with 4008 and stop its consumer."""
        self.cut = True
        logger.warning("closing a slow consumer: %s", why)
        metrics.SLOW_CONSUMERS.inc()
        try:
            async with asyncio.timeout(1.0):  # the close frame may not fit either
                await self.consumer.close(code=CLOSE_SLOW_CONSUMER)
        except TimeoutError:
            pass
        await self.consumer.disconnect(CLOSE_SLOW_CONSUMER)
        raise StopConsumer()


Frames = list[tuple[str, int, int]]  # (text of an ``events`` frame, its last offset, entries)


class FrameCache:
    """The last few notifications' frames, shared by the subscribers of one worker: every
    subscriber of a session gets the same frames, built once."""

    SIZE = 64

    def __init__(self) -> None:
        self._frames: dict[tuple[Any, ...], Frames] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Frames | None:
        return self._frames.get(key)

    def put(self, key: tuple[Any, ...], frames: Frames) -> Frames:
        with self._lock:
            self._frames[key] = frames
            while len(self._frames) > self.SIZE:
                del self._frames[next(iter(self._frames))]
        return frames


SHARED_FRAMES = FrameCache()
