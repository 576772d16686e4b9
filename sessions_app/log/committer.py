"""The one group committer: every door's appends from one event loop share transactions.

Appends that arrive while a commit runs are written together in the next one, across
sessions and doors, and each gets its own result. ``GROUP_COMMIT_WINDOW`` makes the committer
wait that long for company first, unless a lone append follows a lone commit; a door whose
callers wait for each answer (Durable Streams) asks for a window of 0. A lone plain append
may run on the event loop's own connection (``lanes``); everything else runs in the writer
thread (``executors``). After each commit:
the metrics, the log lines, and the notifications (sent on their own task, in commit order,
beside the next commit).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from django.utils import timezone

import sessions_app.log.fanout as fanout
from sessions_app import metrics
from sessions_app.conf import setting
from sessions_app.domain.errors import SessionError
from sessions_app.log.commit import append_statement, commit_isolated, statement_result
from sessions_app.log.executors import guarded, run_write
from sessions_app.log.fanout import Notes, notes_for
from sessions_app.log.lanes import LaneFailed, for_this_loop
from sessions_app.log.requests import AppendRequest, AppendResult, Pending

logger = logging.getLogger("sessions_app.log")

# Requests in one transaction at most, whatever their entries (a close appends none).
MAX_REQUESTS = 500
# How long the notifications wait after a commit: a timer's shortest, see ``_send``.
AFTER_IO = 1e-6

Outcome = AppendResult | SessionError
Queued = tuple[Pending, "asyncio.Future[Outcome]", float]


def _raise_or_return(result: Outcome) -> AppendResult:
    if isinstance(result, SessionError):
        raise result
    return result


def _log_results(requests: Sequence[AppendRequest | None], results: Sequence[Outcome]) -> None:
    debug = logger.isEnabledFor(logging.DEBUG)
    for request, result in zip(requests, results, strict=True):
        if not debug and not isinstance(result, SessionError):
            continue  # nothing to log: the line's fields are not worth building per append
        ids = {
            "session": request.session_pk if request else None,
            "producer": request.producer.id if request and request.producer else None,
            "run": next((item.run for item in request.items if item.run), None)
            if request
            else None,
        }
        if isinstance(result, SessionError):
            logger.info("append refused: %s", result.message, extra={**ids, "code": result.code})
        else:
            logger.debug("appended", extra={**ids, "offset": result.last, "entries": result.wrote})


def _observe(results: Sequence[Outcome], started: float) -> None:
    entries = sum(r.wrote for r in results if isinstance(r, AppendResult))
    metrics.COMMIT_SECONDS.observe(time.monotonic() - started)
    metrics.BATCH_SIZE.observe(entries)
    metrics.APPENDED.inc(entries)


def _finish(
    requests: Sequence[AppendRequest | None], results: Sequence[Outcome], started: float
) -> Notes:
    _observe(results, started)
    _log_results(requests, results)
    return notes_for(requests, results)


def append_sync(request: Pending) -> AppendResult:
    """Append in the caller's thread and notify subscribers (for sync code: views, commands)."""
    started = time.monotonic()
    resolved, results = guarded(commit_isolated, [request])
    notes = _finish(resolved, results, started)
    if notes:
        async_to_sync(fanout.notify)(notes)
    return _raise_or_return(results[0])


class GroupCommitter:
    """Batches the appends of one event loop into shared transactions."""

    def __init__(self) -> None:
        self._queue: list[Queued] = []
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0  # how many commits this committer made (for metrics and tests)
        self._last_batch = 0  # requests in the previous commit
        # Fan-out runs beside the next commit, in commit order, on its own task.
        self._outbox = Notes()
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, request: Pending, window: float | None = None) -> AppendResult:
        return _raise_or_return(await self.enqueue(request, window))

    def enqueue(self, request: Pending, window: float | None = None) -> asyncio.Future[Outcome]:
        """Queue an append now; appends from one caller land in the order it queued them.
        ``window``: how long this append may wait for company (None: the site's setting)."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        wait = setting("GROUP_COMMIT_WINDOW") if window is None else window
        self._queue.append((request, future, wait))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        limit = setting("GROUP_COMMIT_MAX_ENTRIES")
        while self._queue:
            window = self._window()
            if window:
                await asyncio.sleep(window)
            batch = self._take(limit)
            self._last_batch = len(batch)
            requests = [request for request, _, _ in batch]
            self.transactions += 1
            started = time.monotonic()
            resolved: list[AppendRequest | None] = [None] * len(batch)
            try:
                done = await self._on_loop(requests[0]) if len(requests) == 1 else None
                if done is not None:
                    resolved, results = [done[0]], [done[1]]
                else:
                    resolved, results = await run_write(commit_isolated, requests)
                notes = _finish(resolved, results, started)
            except Exception as exc:  # the whole batch failed: every caller hears why
                error = (
                    exc if isinstance(exc, SessionError) else SessionError(f"append failed: {exc}")
                )
                logger.exception("group commit failed")
                results, notes = [error] * len(batch), Notes()
            for (_, future, _), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            if notes:
                self._outbox.extend(notes)
                if self._sender is None or self._sender.done():
                    self._sender = asyncio.create_task(self._send())
        # A finished task still holds its loop, which keys this committer in ``_committers``:
        # let go, so that a loop that ends takes its committer (and connection) with it.
        self._task = None

    def _window(self) -> float:
        """How long the next commit waits for company: not at all for a lone append after a
        lone commit. A caller that waits for each answer (one publisher, one event a frame) has
        no company coming, and the 2 ms default was most of its round trip (bench/README.md,
        session 9). Appends that queue up during a commit, or arrive together, still wait."""
        if len(self._queue) == 1 and self._last_batch <= 1:
            return 0.0
        return min(wait for _, _, wait in self._queue)

    async def _on_loop(self, pending: Pending) -> tuple[AppendRequest | None, Outcome] | None:
        """A lone append on the event loop's own connection: its outcome, or None for the
        writer thread to do it (not plain, no connection, or nothing written)."""
        if not pending.plain:
            return None
        lane = for_this_loop()
        if lane is None or not lane.take():
            return None
        try:
            if isinstance(pending, AppendRequest):
                request: AppendRequest | None = pending
            else:
                request = await pending.resolve_on_loop(lane.fetch)
            if request is None or not request.plain:
                return None
            sql, params = append_statement(request, timezone.now())
            rows = await lane.fetch(sql, params)
        except LaneFailed as exc:
            return None, exc.error
        except SessionError as exc:
            return None, exc
        if rows is None:
            return None
        result = statement_result(request, [row[0] for row in rows])
        if result is None:  # closed, deleted or expired since the lookup: the thread says which
            if not isinstance(pending, AppendRequest):
                pending.written_nothing()
            return None
        return request, result

    async def _send(self) -> None:
        # First let the answers just given reach their sockets: under daphne a reply is
        # written when the loop next polls (Twisted buffers it), and publishing to Redis
        # first put its CPU (~0.1 ms) between a lone publisher's commit and its ack. A timer
        # runs after the I/O of the loop's next poll; a ready callback would run before it.
        await asyncio.sleep(AFTER_IO)
        while self._outbox:
            notes, self._outbox = self._outbox, Notes()
            await fanout.notify(notes)

    def _take(self, limit: int) -> list[Queued]:
        taken, size = 0, 0
        for request, _, _ in self._queue:
            size += len(request.items) if isinstance(request, AppendRequest) else 1
            taken += 1
            if size >= limit or taken >= MAX_REQUESTS:
                break
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch


_committers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommitter] = (
    weakref.WeakKeyDictionary()
)


def committer() -> GroupCommitter:
    """This event loop's group committer."""
    loop = asyncio.get_running_loop()
    found = _committers.get(loop)
    if found is None:
        found = _committers[loop] = GroupCommitter()
    return found


async def append(request: Pending, window: float | None = None) -> AppendResult:
    """Append through this event loop's group committer; raises SessionError subclasses."""
    return await committer().submit(request, window)


def append_queued(request: Pending, window: float | None = None) -> asyncio.Future[Any]:
    """Queue an append without waiting for it: its place among this loop's appends is fixed
    now. The future's result is the AppendResult, or the SessionError that refused it."""
    return committer().enqueue(request, window)
