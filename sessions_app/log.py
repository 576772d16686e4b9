"""The log service: the only code that writes or reads a session's entries.

Writes
    ``append_sync`` commits one append in the caller's thread. ``append`` (async) hands the
    append to this process's group committer: appends that arrive while a commit is running
    are written together in the next transaction, across sessions, and each gets its own
    result. Offsets are allocated inside that transaction by advancing ``Session.head`` under
    the row's lock, so they follow commit order, and a unique constraint backs them.
Fan-out
    After commit, one notification per session and batch goes to the channel layer, carrying
    the new entries (or only their range when they are large). It is a hint: subscribers
    read anything they missed from the database (see ``domain.delivery``).
Reads
    ``read`` returns entries after an offset; ``fold_session`` the folded state.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import DatabaseError, IntegrityError, connection, models, transaction
from django.utils import timezone

from sessions_app import dbexec, metrics
from sessions_app.conf import setting
from sessions_app.domain import producers
from sessions_app.domain.errors import NotFound, SessionError, StreamClosed
from sessions_app.domain.fold import SessionState, fold
from sessions_app.models import Entry, Producer, Session
from sessions_app.runs import RunTracker

logger = logging.getLogger(__name__)

try:  # orjson parses the log's JSON about three times faster: it dominates snapshot time
    from orjson import loads
except ImportError:  # pragma: no cover
    loads = json.loads  # type: ignore[assignment]

# Notifications carry the entries themselves up to this size; above it, only the range.
NOTIFY_INLINE_BYTES = 256 * 1024
FOLD_BATCH = 5000
# A snapshot that folds at least this many entries leaves a checkpoint for the next one.
CHECKPOINT_ENTRIES = 1000


@dataclass
class Item:
    """One entry to append: its stored body, the columns the admin filters on, and for
    events that start, end or control runs, their ``data`` and ``agent`` (see runs.py)."""

    body: str | bytes
    type: str = ""
    run: str = ""
    data: dict[str, Any] | None = None
    agent: str = ""

    @property
    def size(self) -> int:
        return len(self.body.encode() if isinstance(self.body, str) else self.body)


@dataclass
class AppendRequest:
    session_pk: int
    items: Sequence[Item]
    producer: producers.ProducerClaim | None = None


@dataclass(frozen=True)
class AppendResult:
    first: int  # offset of the first entry appended (for a duplicate: of the original)
    last: int
    duplicate: bool = False

    @property
    def seqs(self) -> range:
        return range(self.first, self.last + 1)


@dataclass
class Notification:
    session_pk: int
    first: int
    last: int
    bodies: list[str | bytes] = field(default_factory=list)

    def message(self) -> dict[str, Any]:
        size = sum(len(b) for b in self.bodies)
        inline = size <= NOTIFY_INLINE_BYTES
        return {
            "type": "log.entries",
            "session": self.session_pk,
            "first": self.first,
            "last": self.last,
            "bodies": self.bodies if inline else None,
        }


def group_name(session_pk: int) -> str:
    return f"sessions_app.s{session_pk}"


# --- writing -------------------------------------------------------------------------------


def _lock_session(session_pk: int) -> tuple[int, bool]:
    """Lock the session's row for this transaction; return (head, closed)."""
    table = connection.ops.quote_name(Session._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT head, closed FROM {table} WHERE id = %s{lock}", [session_pk])
        row = cursor.fetchone()
    if row is None:
        raise NotFound("no such session")
    return int(row[0]), bool(row[1])


def _advance_head(session_pk: int, count: int, size: int) -> int:
    """Allocate ``count`` offsets; return the new head. The row must be locked already."""
    table = connection.ops.quote_name(Session._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET head = head + %s, size_bytes = size_bytes + %s, "
            f"last_activity = %s WHERE id = %s RETURNING head",
            [count, size, timezone.now(), session_pk],
        )
        return int(cursor.fetchone()[0])


def _judge_producer(
    request: AppendRequest, known: dict[tuple[int, str], Producer | None]
) -> tuple[producers.Verdict, Producer | None]:
    claim = request.producer
    assert claim is not None
    key = (request.session_pk, claim.id)
    if key not in known:
        known[key] = Producer.objects.filter(
            session_id=request.session_pk, producer_id=claim.id
        ).first()
    row = known[key]
    state = None if row is None else producers.ProducerState(row.epoch, row.last_seq)
    return producers.judge(state, claim), row


def _apply_one(
    request: AppendRequest,
    known: dict[tuple[int, str], Producer | None],
    heads: dict[int, int],
    entries: list[Entry],
    now: Any,
    tracker: RunTracker,
    sizes: dict[int, int],
) -> AppendResult:
    if request.session_pk not in heads:
        head, closed = _lock_session(request.session_pk)
        if closed:
            raise StreamClosed("the session is closed; nothing more can be appended")
        heads[request.session_pk] = head
    row = None
    if request.producer is not None:
        verdict, row = _judge_producer(request, known)
        if verdict is producers.Verdict.DUPLICATE:
            assert row is not None
            if request.producer.seq == row.last_seq:  # the retry of the last append
                return AppendResult(
                    row.last_first, row.last_first + row.last_count - 1, duplicate=True
                )
            return AppendResult(1, 0, duplicate=True)  # an older one: its offsets are not kept
    changes = tracker.plan(request)  # may refuse the append: nothing is written yet
    # We hold the session's row lock: the next offsets are ours. The head is written once per
    # session and batch (``_write_heads``), inside this same transaction.
    count = len(request.items)
    first = heads[request.session_pk] + 1
    last = heads[request.session_pk] = first + count - 1
    sizes[request.session_pk] = sizes.get(request.session_pk, 0) + sum(
        item.size for item in request.items
    )
    tracker.apply(request, changes, first, now)
    for seq, item in enumerate(request.items, start=first):
        body = item.body.encode() if isinstance(item.body, str) else item.body
        entries.append(
            Entry(
                session_id=request.session_pk,
                seq=seq,
                type=item.type,
                run=item.run,
                body=body,
                created_at=now,
            )
        )
    if request.producer is not None:
        claim = request.producer
        if row is None:
            row = Producer(session_id=request.session_pk, producer_id=claim.id)
        row.epoch, row.last_seq, row.last_first, row.last_count = (
            claim.epoch,
            claim.seq,
            first,
            count,
        )
        row.save()
        known[(request.session_pk, claim.id)] = row
    return AppendResult(first, last)


def commit_batch(
    requests: Sequence[AppendRequest],
) -> tuple[list[AppendResult | SessionError], list[Notification]]:
    """Write ``requests`` in one transaction; return each one's result and the notifications.

    A request that is refused (closed session, producer conflict) writes nothing and gets its
    error; the others still land. Sessions are locked in ascending id order so that two
    processes committing overlapping batches cannot deadlock.
    """
    order = sorted(range(len(requests)), key=lambda i: requests[i].session_pk)
    results: list[AppendResult | SessionError | None] = [None] * len(requests)
    entries: list[Entry] = []
    known: dict[tuple[int, str], Producer | None] = {}
    heads: dict[int, int] = {}
    sizes: dict[int, int] = {}
    tracker = RunTracker()
    now = timezone.now()
    with transaction.atomic():
        for index in order:
            try:
                results[index] = _apply_one(
                    requests[index], known, heads, entries, now, tracker, sizes
                )
            except SessionError as exc:
                results[index] = exc
        _write_heads(heads, sizes, now)
        _insert_entries(entries)
    done = [r for r in results if r is not None]
    return done, _notifications(requests, done)


def _write_heads(heads: dict[int, int], sizes: dict[int, int], now: Any) -> None:
    table = connection.ops.quote_name(Session._meta.db_table)
    with connection.cursor() as cursor:
        for pk, size in sizes.items():
            cursor.execute(
                f"UPDATE {table} SET head = %s, size_bytes = size_bytes + %s, "
                "last_activity = %s WHERE id = %s",
                [heads[pk], size, now, pk],
            )


COPY_COLUMNS = ("session_id", "seq", "type", "run", "body", "created_at")


def _insert_entries(entries: list[Entry]) -> None:
    """Insert the batch's entries: with COPY on PostgreSQL (several times faster than an
    INSERT of many rows), with one bulk INSERT elsewhere."""
    if not entries:
        return
    if connection.vendor != "postgresql":
        Entry.objects.bulk_create(entries, batch_size=500)
        return
    table = connection.ops.quote_name(Entry._meta.db_table)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy,
    ):
        for e in entries:
            copy.write_row((e.session_id, e.seq, e.type, e.run, e.body, e.created_at))


def _notifications(
    requests: Sequence[AppendRequest], results: Sequence[AppendResult | SessionError]
) -> list[Notification]:
    by_session: dict[int, Notification] = {}
    for request, result in sorted(
        zip(requests, results, strict=True), key=lambda rr: _first(rr[1])
    ):
        if not isinstance(result, AppendResult) or result.duplicate:
            continue
        note = by_session.get(request.session_pk)
        if note is None:
            note = by_session[request.session_pk] = Notification(
                request.session_pk, result.first, result.last
            )
        note.last = result.last
        note.bodies.extend(item.body for item in request.items)
    return list(by_session.values())


def _first(result: AppendResult | SessionError) -> int:
    return result.first if isinstance(result, AppendResult) else 0


def _commit_isolated(
    requests: Sequence[AppendRequest],
) -> tuple[list[AppendResult | SessionError], list[Notification]]:
    """Commit a batch; if the batch as a whole fails, commit each request alone."""
    try:
        return commit_batch(requests)
    except IntegrityError:
        if len(requests) == 1:
            raise
        logger.warning("group commit of %d appends failed; retrying them one by one", len(requests))
    results: list[AppendResult | SessionError] = []
    notes: list[Notification] = []
    for request in requests:
        try:
            (result,), more = commit_batch([request])
        except IntegrityError as exc:
            result, more = SessionError(f"append refused by the database: {exc}"), []
        results.append(result)
        notes.extend(more)
    return results, notes


def _raise_or_return(result: AppendResult | SessionError) -> AppendResult:
    if isinstance(result, SessionError):
        raise result
    return result


def _log_results(
    requests: Sequence[AppendRequest], results: Sequence[AppendResult | SessionError]
) -> None:
    for request, result in zip(requests, results, strict=True):
        ids = {
            "session": request.session_pk,
            "producer": request.producer.id if request.producer else None,
            "run": next((item.run for item in request.items if item.run), None),
        }
        if isinstance(result, SessionError):
            logger.info("append refused: %s", result.message, extra={**ids, "code": result.code})
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "appended", extra={**ids, "offset": result.last, "entries": len(result.seqs)}
            )


def _observe_commit(results: Sequence[AppendResult | SessionError], started: float) -> None:
    entries = sum(len(r.seqs) for r in results if isinstance(r, AppendResult) and not r.duplicate)
    metrics.COMMIT_SECONDS.observe(time.monotonic() - started)
    metrics.BATCH_SIZE.observe(entries)
    metrics.APPENDED.inc(entries)


def append_sync(request: AppendRequest) -> AppendResult:
    """Append in the caller's thread and notify subscribers (for sync code: views, commands)."""
    started = time.monotonic()
    results, notes = dbexec._guarded(_commit_isolated, [request])
    _observe_commit(results, started)
    _log_results([request], results)
    if notes:
        async_to_sync(_notify)(notes)
    return _raise_or_return(results[0])


class GroupCommitter:
    """Batches the appends of one event loop into shared transactions."""

    def __init__(self) -> None:
        self._queue: list[tuple[AppendRequest, asyncio.Future[AppendResult | SessionError]]] = []
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0  # how many commits this committer made (for metrics and tests)
        # Fan-out runs beside the next commit, in commit order, on its own task.
        self._outbox: list[Notification] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, request: AppendRequest) -> AppendResult:
        return _raise_or_return(await self.enqueue(request))

    def enqueue(self, request: AppendRequest) -> asyncio.Future[AppendResult | SessionError]:
        """Queue an append now; appends from one caller land in the order it queued them."""
        future: asyncio.Future[AppendResult | SessionError] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.append((request, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        window = setting("GROUP_COMMIT_WINDOW")
        limit = setting("GROUP_COMMIT_MAX_ENTRIES")
        while self._queue:
            if window:
                await asyncio.sleep(window)
            batch = self._take(limit)
            self.transactions += 1
            started = time.monotonic()
            try:
                results, notes = await dbexec.run_write(_commit_isolated, [r for r, _ in batch])
                _observe_commit(results, started)
                _log_results([r for r, _ in batch], results)
            except Exception as exc:  # the whole batch failed: every caller hears why
                error = (
                    exc if isinstance(exc, SessionError) else SessionError(f"append failed: {exc}")
                )
                logger.exception("group commit failed")
                results, notes = [error] * len(batch), []
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            if notes:
                self._outbox.extend(notes)
                if self._sender is None or self._sender.done():
                    self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while self._outbox:
            notes, self._outbox = self._outbox, []
            await _notify(notes)

    def _take(
        self, limit: int
    ) -> list[tuple[AppendRequest, asyncio.Future[AppendResult | SessionError]]]:
        taken, size = 0, 0
        for request, _ in self._queue:
            size += len(request.items)
            taken += 1
            if size >= limit:
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


async def append(request: AppendRequest) -> AppendResult:
    """Append through this event loop's group committer; raises SessionError subclasses."""
    return await committer().submit(request)


def append_queued(request: AppendRequest) -> asyncio.Future[AppendResult | SessionError]:
    """Queue an append without waiting for it: its place among this loop's appends is fixed
    now. The future's result is the AppendResult, or the SessionError that refused it."""
    return committer().enqueue(request)


async def _notify(notes: Sequence[Notification]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for note in notes:
        try:
            await layer.group_send(group_name(note.session_pk), note.message())
        except Exception:  # the log is the truth: a lost hint is recovered by readers
            logger.warning("fan-out to session %s failed", note.session_pk, exc_info=True)


# --- reading -------------------------------------------------------------------------------


def read(
    session_pk: int, after: int, limit: int, max_bytes: int | None = None
) -> list[tuple[int, bytes]]:
    """Entries with offsets above ``after``, in order: at most ``limit``, and with
    ``max_bytes`` none after the one that reaches that many bytes (so always at least one)."""
    # Plain SQL, not the ORM: it skips the per-row compilation (reading 10,000 entries on
    # PostgreSQL takes 30 ms instead of 50), and the size bound needs a window function.
    with connection.cursor() as cursor:
        if max_bytes is None:
            cursor.execute(_read_sql(bounded=False), [session_pk, after, limit])
        else:
            cursor.execute(_read_sql(bounded=True), [session_pk, after, limit, max_bytes])
        return [(seq, bytes(body)) for seq, body in cursor.fetchall()]


@functools.cache
def _read_sql(bounded: bool) -> str:
    q = connection.ops.quote_name
    meta = Entry._meta
    columns = {f.name: q(str(f.column)) for f in meta.concrete_fields}
    seq, body, session = columns["seq"], columns["body"], columns["session"]
    page = (
        f"SELECT {seq} AS seq, {body} AS body FROM {q(meta.db_table)} "
        f"WHERE {session} = %s AND {seq} > %s ORDER BY {seq} LIMIT %s"
    )
    if not bounded:
        return page
    return (
        "SELECT seq, body FROM (SELECT seq, body, "
        "SUM(LENGTH(body)) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) AS upto "
        f"FROM ({page}) AS page) AS sized WHERE upto - LENGTH(body) < %s ORDER BY seq"
    )


async def aread(
    session_pk: int, after: int, limit: int, max_bytes: int | None = None
) -> list[tuple[int, bytes]]:
    return await dbexec.run_read(read, session_pk, after, limit, max_bytes)


def head_and_tail(session_pk: int) -> tuple[int, int]:
    row = Session.objects.filter(pk=session_pk).values_list("head", "tail").first()
    if row is None:
        raise NotFound("no such session")
    return int(row[0]), int(row[1])


def fold_session(session_pk: int) -> SessionState:
    """The folded state of a session: its stored snapshot plus every retained entry.

    It starts from the session's checkpoint when one is usable, and leaves a new checkpoint
    when it had to fold at least ``CHECKPOINT_ENTRIES`` entries, so that a long session is
    folded once, not on every snapshot request.
    """
    row = (
        Session.objects.filter(pk=session_pk)
        .values_list("snapshot", "tail", "checkpoint", "checkpoint_seq")
        .first()
    )
    if row is None:
        raise NotFound("no such session")
    snapshot, tail, checkpoint, checkpoint_seq = row
    if checkpoint is not None and checkpoint_seq >= tail:
        state = SessionState.from_dict(checkpoint, checkpoint_seq)
    else:
        state = SessionState.from_dict(snapshot, tail) if snapshot else SessionState(seq=tail)
    start = after = state.seq
    while True:
        batch = read(session_pk, after, FOLD_BATCH)
        fold(((seq, loads(body)) for seq, body in batch), state)
        if len(batch) < FOLD_BATCH:
            break
        after = batch[-1][0]
    if state.seq - start >= CHECKPOINT_ENTRIES:
        _save_checkpoint(session_pk, state)
    return state


def _save_checkpoint(session_pk: int, state: SessionState) -> None:
    try:
        Session.objects.filter(pk=session_pk, checkpoint_seq__lt=state.seq).update(
            checkpoint=state.as_dict(), checkpoint_seq=state.seq
        )
    except DatabaseError:  # only a cache: the next snapshot folds a little more
        logger.warning("could not save the checkpoint of session %s", session_pk, exc_info=True)


def now_ms() -> int:
    return int(time.time() * 1000)


# --- retention -----------------------------------------------------------------------------


def compact(session_pk: int, up_to: int) -> int:
    """Fold entries ``tail+1 .. up_to`` into the stored snapshot and delete them.

    Readers then see the same fold as before (snapshot + the rest), and a resume below the
    new tail gets "offset expired". Returns how many entries were removed.
    """
    with transaction.atomic():
        head, _closed = _lock_session(session_pk)
        session = Session.objects.get(pk=session_pk)
        up_to = min(up_to, head)
        if up_to <= session.tail:
            return 0
        snapshot = None
        if session.is_json:
            base = (
                SessionState.from_dict(session.snapshot, session.tail) if session.snapshot else None
            )
            rows = Entry.objects.filter(session_id=session_pk, seq__gt=session.tail, seq__lte=up_to)
            entries = (
                (seq, loads(bytes(body)))
                for seq, body in rows.order_by("seq").values_list("seq", "body")
            )
            snapshot = fold(entries, base or SessionState(seq=session.tail)).as_dict()
        removed, _ = Entry.objects.filter(session_id=session_pk, seq__lte=up_to).delete()
        Session.objects.filter(pk=session_pk).update(tail=up_to, snapshot=snapshot)
        Session.objects.filter(pk=session_pk, checkpoint_seq__lt=up_to).update(
            checkpoint=None, checkpoint_seq=0
        )
        return removed


def finished_sessions(idle_since: Any) -> list[int]:
    """Sessions with entries to compact, idle since ``idle_since``, and no run still going."""
    from sessions_app.models import Run

    active = Run.objects.filter(status__in=["running", "cancelling"]).values("session_id")
    quiet = Session.objects.filter(
        last_activity__lt=idle_since, head__gt=models.F("tail"), deleted=False
    )
    return list(quiet.exclude(pk__in=active).values_list("pk", flat=True))


def expired_offset(session_pk: int, before: Any) -> int:
    """The highest offset of the session's entries written before ``before`` (0: none)."""
    row = (
        Entry.objects.filter(session_id=session_pk, created_at__lt=before)
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    )
    return int(row or 0)


# --- waiting for entries, asking subscribers --------------------------------------------------


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
