"""Lookups of one event loop that share one database call: what a join storm's thousands of
subscribes on one worker ask (issue #25: their one-by-one lookups kept the reader threads
waiting on the database for most of the storm).

A ``Batcher`` answers the asks that arrive while its call is in flight together, in the next
call, on a reader thread. Every call starts after every ask it answers arrived, and nothing is
kept from one call to the next, so no answer is older than its question (access is checked on
every use, as a lookup of its own would check it).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sessions_app.log.executors import run_read

K = TypeVar("K")
V = TypeVar("V")

# Asks answered by one call at most: its IN (...) lists stay short, and the asks beyond wait
# for the next call, not for a call that grew while they waited.
MOST = 500


@dataclass
class _Queue:
    asks: list[tuple[Any, asyncio.Future[Any]]] = field(default_factory=list)
    calling: set[asyncio.Task[None]] = field(default_factory=set)  # calls in flight


class Batcher(Generic[K, V]):
    """``await batcher.ask(key)``: the answer for ``key``, looked up with the keys asked at
    about the same time.

    ``many(keys)`` runs on a reader thread and returns one answer per key, in order: a value,
    or an exception for that asker alone (a NotFound for one socket fails no other). An
    exception ``many`` raises (the database is down) reaches every asker of that call. A call
    of one key runs ``one(key)`` instead when given: a lone ask costs what it cost before.
    At most ``calls`` calls are in flight at once (per event loop).
    """

    def __init__(
        self,
        many: Callable[[list[K]], Sequence[V | Exception]],
        one: Callable[[K], V] | None = None,
        calls: int = 1,
    ) -> None:
        self.many, self.one, self.calls = many, one, calls
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary()
        )

    async def ask(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        answer: asyncio.Future[V | Exception] = loop.create_future()
        queue.asks.append((key, answer))
        if len(queue.calling) < self.calls:
            # Started on the loop's next turn: the asks of this turn go in the same call.
            call = loop.create_task(self._call(queue))
            queue.calling.add(call)
            call.add_done_callback(lambda call: _ended(queue, call))
        found = await answer
        if isinstance(found, Exception):
            raise found
        return found

    async def _call(self, queue: _Queue) -> None:
        try:
            while queue.asks:
                asks, queue.asks = queue.asks[:MOST], queue.asks[MOST:]
                asks = [(key, answer) for key, answer in asks if not answer.done()]
                if asks:
                    await self._answer(asks)
        finally:
            # At once, not in the task's done callback: an ask arriving before that callback
            # ran would find the call still counted and wait for nobody.
            _ended(queue, asyncio.current_task())

    async def _answer(self, asks: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            if len(asks) == 1 and self.one is not None:
                found: list[Any] = [await run_read(self.one, asks[0][0])]
            else:
                found = list(await run_read(self.many, [key for key, _ in asks]))
        except Exception as exc:
            found = [exc] * len(asks)
        except BaseException:
            for _, answer in asks:
                answer.cancel()
            raise
        for (_, answer), one in zip(asks, found, strict=True):
            if not answer.done():
                answer.set_result(one)


def _ended(queue: _Queue, call: asyncio.Task[Any] | None) -> None:
    """Forget a call that returned (or was cancelled: then fail what nobody will answer)."""
    queue.calling.discard(call)  # type: ignore[arg-type]
    if not queue.calling:
        for _, answer in queue.asks:  # left only when the calls were cancelled
            answer.cancel()
        queue.asks = []
