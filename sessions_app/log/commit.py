"""The one commit: the only code that writes a session's entries.

``commit`` writes a batch of appends in one transaction. For each request, under the session
row's lock and before anything is written, it judges: the session is there, not deleted or
expired (answered as the door's ``when_gone`` says); a closed session takes nothing (a retry of
what landed is a duplicate, a lone close is fine); the producer (fenced, duplicate, gap or a
new epoch); the ``Stream-Seq``; the size limit; and the run lifecycle (``runs.RunTracker``).
A refused request writes nothing and gets its error; the others still land. Then offsets are
allocated by advancing ``Session.head`` (once per session and batch), the entries inserted
(COPY on PostgreSQL), the runs and the producer recorded.

A lone plain append on PostgreSQL outside a transaction skips the lock: ``append_statement``
advances the head and inserts the entries in one autocommitted statement (the writer thread
runs it, and so does the event loop's own connection, ``log.lanes``). It writes nothing when
the session is closed, deleted, expired or full; the full path then says which.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sessions_app.domain import producers
from sessions_app.domain.errors import (
    BadRequest,
    Conflict,
    LimitExceeded,
    NotFound,
    SessionError,
    StreamClosed,
)
from sessions_app.log.ratings import FeedbackTracker
from sessions_app.log.requests import AppendRequest, AppendResult, Item, Locked, Pending
from sessions_app.models import PROTOCOL_STATE_KEY, Entry, Producer, Session
from sessions_app.rows import insert_rows, read_together
from sessions_app.runs import RunTracker
from sessions_app.turns import TurnTracker

logger = logging.getLogger("sessions_app.log")

COPY_COLUMNS = ("session_id", "seq", "type", "run", "body", "created_at")
# Protocol state the session's columns have no place for (the last Stream-Seq; the door adds
# its own: the original Stream-Expires-At text, the fork request) lives under this key of
# ``Session.metadata`` (defined with the model, whose save keeps it).
STATE_KEY = PROTOCOL_STATE_KEY

Results = tuple[list[AppendRequest | None], list[AppendResult | SessionError]]


def aware(value: datetime | str | None) -> datetime | None:
    """A datetime column's value as the ORM gives it: aware (UTC) with ``USE_TZ``."""
    if isinstance(value, str):  # SQLite keeps datetimes as text (in UTC with USE_TZ)
        value = parse_datetime(value)
    if value is not None and settings.USE_TZ and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


@dataclass
class _Row:
    """A session locked by this transaction, as the batch has changed it so far."""

    head: int
    closed: bool
    deleted: bool
    expires_at: datetime | None
    size: int
    raw_metadata: Any
    added: int = 0  # bytes this batch appended
    written: bool = False
    changes: dict[str, Any] = field(default_factory=dict)
    _metadata: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            raw = self.raw_metadata
            self._metadata = dict((json.loads(raw) if isinstance(raw, str) else raw) or {})
        return self._metadata

    def stream_state(self) -> dict[str, Any]:
        return dict(self.metadata().get(STATE_KEY) or {})


@dataclass
class _ProducerRow:
    """A producer's stored state, as the commit reads and writes it: plain values, read by
    one SELECT and written by one UPDATE (no model instances, no ORM query building)."""

    pk: int | None
    epoch: int
    last_seq: int
    last_first: int
    last_count: int


@dataclass
class _Batch:
    now: datetime
    rows: dict[int, _Row] = field(default_factory=dict)
    entries: list[tuple[int, int, str, str, bytes, datetime]] = field(default_factory=list)
    producer_rows: dict[tuple[int, str], _ProducerRow | None] = field(default_factory=dict)
    producers_written: set[tuple[int, str]] = field(default_factory=set)
    tracker: RunTracker = field(default_factory=RunTracker)
    turns: TurnTracker = field(default_factory=TurnTracker)
    ratings: FeedbackTracker = field(default_factory=FeedbackTracker)

    def prefetch(self, requests: Sequence[AppendRequest]) -> None:
        """For a batch of several requests: lock all their sessions (in ascending id order)
        with one statement, then read their producers with one and their runs with one,
        instead of up to three round trips per request. Each read is a statement of its own
        after the locks are held, so under READ COMMITTED it sees what the locks' previous
        holders wrote. What is not found here, ``lock`` and ``producer`` look up as alone."""
        pks = sorted({request.session_pk for request in requests})
        if len(requests) < 2 or len(pks) > _PREFETCH_MOST:
            return
        # One round trip on PostgreSQL (``read_together``): the locks first, then each read
        # after them, as if sent one by one.
        reads: list[tuple[str, Sequence[Any]]] = [
            (_lock_many_sql(connection.features.has_select_for_update, len(pks)), pks)
        ]
        claims = {
            (request.session_pk, request.producer.id)
            for request in requests
            if request.producer is not None
        }
        if claims:
            ids = sorted({producer_id for _, producer_id in claims})
            reads.append((_producers_sql(len(pks), len(ids)), [*pks, *ids]))
        runs = self.tracker.prefetch_read(requests)
        turns = self.turns.prefetch_read(requests)
        reads += [read for read in (runs, turns) if read is not None]
        found = iter(read_together(reads))
        for pk, head, closed, deleted, expires_at, size, metadata in next(found):
            self.rows[pk] = _Row(
                int(head), bool(closed), bool(deleted), aware(expires_at), int(size), metadata
            )
        if claims:
            for pk, producer_id, *values in next(found):
                if (pk, producer_id) in claims and pk in self.rows:
                    self.producer_rows[(pk, producer_id)] = _producer_row(values)
            for key in claims:
                if key[0] in self.rows:
                    self.producer_rows.setdefault(key, None)
        # Read for every request: those of a session not found are refused before they are
        # looked at again, and what was read for them is never used.
        if runs is not None:
            self.tracker.prefetched(requests, next(found))
        if turns is not None:
            self.turns.prefetched(next(found))

    def flush(self) -> None:
        """Write the runs and turns the batch changed so far (before a read that must see
        them, and at the end)."""
        self.tracker.flush()
        self.turns.flush(self.now)

    def lock(self, pk: int) -> _Row:
        row = self.rows.get(pk)
        if row is None:
            with connection.cursor() as cursor:
                cursor.execute(_lock_sql(connection.features.has_select_for_update), [pk])
                found = cursor.fetchone()
            if found is None:
                raise NotFound("no such session")
            head, closed, deleted, expires_at, size, metadata = found
            row = self.rows[pk] = _Row(
                int(head), bool(closed), bool(deleted), aware(expires_at), int(size), metadata
            )
        return row

    def producer(self, pk: int, claim: producers.ProducerClaim) -> _ProducerRow | None:
        # Read after the session's lock is held, by a statement of its own: under READ
        # COMMITTED it sees what the lock's previous holder wrote (a join in the lock
        # statement would read the producer as of before the wait for the lock).
        key = (pk, claim.id)
        if key not in self.producer_rows:
            with connection.cursor() as cursor:
                cursor.execute(_producer_sql(), [claim.id, pk])
                found = cursor.fetchone()
            self.producer_rows[key] = _producer_row(found)
        return self.producer_rows[key]


_PRODUCER_COLUMNS = ("id", "epoch", "last_seq", "last_first", "last_count")


def _producer_row(values: Sequence[Any] | None) -> _ProducerRow | None:
    if values is None or values[0] is None:
        return None
    pk, epoch, last_seq, last_first, last_count = values
    return _ProducerRow(int(pk), int(epoch), int(last_seq), int(last_first), int(last_count))


@functools.cache
def _lock_sql(for_update: bool) -> str:
    table = connection.ops.quote_name(Session._meta.db_table)
    lock = " FOR UPDATE" if for_update else ""
    return (
        "SELECT head, closed, deleted, expires_at, size_bytes, metadata "
        f"FROM {table} WHERE id = %s{lock}"
    )


_PREFETCH_MOST = 500  # sessions one prefetch statement names at most (a batch's requests)


@functools.lru_cache(maxsize=256)
def _lock_many_sql(for_update: bool, count: int) -> str:
    table = connection.ops.quote_name(Session._meta.db_table)
    lock = " FOR UPDATE" if for_update else ""
    marks = ", ".join(["%s"] * count)
    return (
        "SELECT id, head, closed, deleted, expires_at, size_bytes, metadata "
        f"FROM {table} WHERE id IN ({marks}) ORDER BY id{lock}"
    )


@functools.lru_cache(maxsize=256)
def _producers_sql(sessions: int, ids: int) -> str:
    return (
        f"SELECT session_id, producer_id, {', '.join(_PRODUCER_COLUMNS)} "
        f"FROM {connection.ops.quote_name(Producer._meta.db_table)} "
        f"WHERE session_id IN ({', '.join(['%s'] * sessions)}) "
        f"AND producer_id IN ({', '.join(['%s'] * ids)})"
    )


@functools.cache
def _producer_sql() -> str:
    return (
        f"SELECT {', '.join(_PRODUCER_COLUMNS)} "
        f"FROM {connection.ops.quote_name(Producer._meta.db_table)} "
        "WHERE producer_id = %s AND session_id = %s"
    )


def _producer_updates(batch: _Batch) -> list[list[Any]]:
    """Each producer's last accepted append of the batch: a row made now for each new
    producer; the values to update for the others (``_update_producers``)."""
    updates: list[list[Any]] = []
    made: list[tuple[_ProducerRow, Producer]] = []
    for pk, producer_id in sorted(batch.producers_written):
        prow = batch.producer_rows[(pk, producer_id)]
        assert prow is not None
        if prow.pk is None:
            row = Producer(
                session_id=pk, producer_id=producer_id, epoch=prow.epoch, last_seq=prow.last_seq,
                last_first=prow.last_first, last_count=prow.last_count,
            )  # fmt: skip
            made.append((prow, row))
        else:
            updates.append(
                [prow.epoch, prow.last_seq, prow.last_first, prow.last_count, batch.now, prow.pk]
            )
    insert_rows([row for _, row in made])  # the new producers: one statement
    for prow, row in made:
        prow.pk = row.pk
    return updates


def _update_producers(batch: _Batch, updates: list[list[Any]]) -> None:
    """One UPDATE statement for all the producers' rows."""
    if not updates:
        return
    table = connection.ops.quote_name(Producer._meta.db_table)
    with connection.cursor() as cursor:
        if len(updates) > 1 and connection.vendor == "postgresql":
            # One statement over arrays: psycopg's pipelined executemany spent more CPU in
            # Python per row than the whole statement costs (issue #25's profile).
            cursor.execute(_producers_update_sql(), [batch.now, *_producer_columns(updates)])
            return
        sql = (
            f"UPDATE {table} SET epoch = %s, last_seq = %s, last_first = %s, last_count = %s, "
            "updated_at = %s WHERE id = %s"
        )
        if len(updates) == 1:
            cursor.execute(sql, updates[0])
        else:
            cursor.executemany(sql, updates)


def _producer_columns(updates: list[list[Any]]) -> list[list[Any]]:
    """``_producers_update_sql``'s arrays: epochs, seqs, firsts, counts and ids."""
    return [[u[i] for u in updates] for i in (0, 1, 2, 3, 5)]


@functools.cache
def _producers_update_sql() -> str:
    table = connection.ops.quote_name(Producer._meta.db_table)
    return (
        f"UPDATE {table} AS p SET epoch = v.epoch, last_seq = v.last_seq, "
        "last_first = v.last_first, last_count = v.last_count, updated_at = %s "
        "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::int[], %s::bigint[]) "
        "AS v(epoch, last_seq, last_first, last_count, id) WHERE p.id = v.id"
    )


def _state(row: _ProducerRow | None) -> producers.ProducerState | None:
    return None if row is None else producers.ProducerState(row.epoch, row.last_seq)


def _duplicate(row: _Row, prow: _ProducerRow, claim: producers.ProducerClaim) -> AppendResult:
    if claim.seq == prow.last_seq:  # the retry of the last append: its offsets are kept
        first, last = prow.last_first, prow.last_first + prow.last_count - 1
    else:  # an older one: its offsets are not kept
        first, last = 1, 0
    return AppendResult(
        first,
        last,
        duplicate=True,
        head=row.head,
        closed=row.closed,
        producer_epoch=prow.epoch,
        producer_seq=prow.last_seq,
    )


def _on_closed(request: AppendRequest, row: _Row, prow: _ProducerRow | None) -> AppendResult:
    """A closed session takes nothing; retries of what landed, and repeated closes, are fine."""
    claim = request.producer
    if claim is not None and prow is not None:
        try:
            if producers.judge(_state(prow), claim) is producers.Verdict.DUPLICATE:
                return _duplicate(row, prow, claim)
        except SessionError:
            pass  # a stale or gapped producer on a closed session: the closure is the answer
    if claim is None and request.close and not request.body_sent:
        return AppendResult(row.head + 1, row.head, head=row.head, closed=True)
    raise StreamClosed("the stream is closed; nothing more can be appended", head=row.head)


def _apply_one(request: AppendRequest, batch: _Batch) -> tuple[AppendRequest, AppendResult]:
    """Judge and write one request; return it as written (the session's turn policy may add a
    steer or a cancel to a user message) and what it did."""
    pk = request.session_pk
    claim = request.producer
    row = batch.lock(pk)
    if row.deleted or (row.expires_at is not None and row.expires_at <= batch.now):
        if request.when_gone is not None:
            request.when_gone(Locked(row.head, row.closed, row.deleted, row.expires_at))
        raise NotFound("no such session")
    prow = batch.producer(pk, claim) if claim is not None else None
    if row.closed:
        return request, _on_closed(request, row, prow)
    if claim is not None and producers.judge(_state(prow), claim) is producers.Verdict.DUPLICATE:
        assert prow is not None
        return request, _duplicate(row, prow, claim)
    state = row.stream_state() if request.stream_seq is not None else None
    if state is not None and state.get("seq") is not None and request.stream_seq <= state["seq"]:
        raise Conflict(
            f"Stream-Seq {request.stream_seq!r} is not above the last one, {state['seq']!r}"
        )
    size = sum(item.size for item in request.items)
    if request.max_bytes is not None and row.size + size > request.max_bytes:
        raise LimitExceeded(
            f"this stream holds at most {request.max_bytes} bytes", limit="stream_bytes"
        )
    if any(item.tracked for item in request.items):  # may refuse, or add a steer or a cancel
        request = batch.turns.plan(request, row.metadata(), _control_item, batch.flush)
        size = sum(item.size for item in request.items)
    changes = batch.tracker.plan(request)  # may refuse the append: nothing is written yet
    # Every check passed: from here on the request is written.
    count = len(request.items)
    first = row.head + 1
    row.head += count
    row.size += size
    row.added += size
    row.written = True
    now = batch.now
    if request.items:
        ended = batch.tracker.apply(request, changes, first, now)
        request.turn_wake = batch.turns.apply(request, first, now, ended)
        if any(item.rates for item in request.items):
            batch.flush()  # a rating reads the answer's run
        batch.ratings.apply(request, first, now)
        for seq, item in enumerate(request.items, start=first):
            body = item.body.encode() if isinstance(item.body, str) else item.body
            batch.entries.append((pk, seq, item.type, item.run, body, now))
    if state is not None:
        state["seq"] = request.stream_seq
        metadata = row.metadata()
        metadata[STATE_KEY] = state
        row.changes["metadata"] = metadata
    if request.close:
        row.closed = True
        row.changes["closed"] = True
    if request.ttl is not None:
        row.changes["expires_at"] = row.expires_at = now + timedelta(seconds=request.ttl)
    if claim is not None:  # written with the batch's other producers (_write)
        batch.producer_rows[(pk, claim.id)] = _ProducerRow(
            prow.pk if prow is not None else None, claim.epoch, claim.seq, first, count
        )
        batch.producers_written.add((pk, claim.id))
    return request, AppendResult(
        first,
        first + count - 1,
        head=row.head,
        closed=row.closed,
        producer_epoch=claim.epoch if claim else None,
        producer_seq=claim.seq if claim else None,
    )


def _control_item(event: dict[str, Any]) -> Item:
    """An event the server adds to an append (a session's turn policy: a steer, a cancel)."""
    from sessions_app.domain.events import encode_event
    from sessions_app.log.reads import now_ms

    return Item(encode_event(event, now_ms()), event["type"], event["run"], data=event["data"])


def resolve(pending: Pending) -> AppendRequest:
    return pending if isinstance(pending, AppendRequest) else pending.resolve()


def commit(pendings: Sequence[Pending]) -> Results:
    """Write the appends in one transaction; return each one as resolved (None when it never
    named a session) and its result or error.

    Every lookup comes before the first write, so no row lock of the batch is held while the
    others are looked up. Sessions are locked in ascending id order so that two processes
    committing overlapping batches cannot deadlock.
    """
    resolved: list[AppendRequest | None] = []
    results: list[AppendResult | SessionError | None] = []
    for pending in pendings:
        try:
            resolved.append(resolve(pending))
            results.append(None)
        except SessionError as exc:
            resolved.append(None)
            results.append(exc)
    if (
        len(resolved) == 1
        and (alone := resolved[0]) is not None
        and alone.plain
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
    ):
        # A lone append (a sequential writer): one statement, committed on its own.
        done = _append_by_statement(alone)
        if done is not None:
            return resolved, [done]
    batch = _Batch(timezone.now())
    order = sorted(
        (i for i, request in enumerate(resolved) if request is not None),
        key=lambda i: resolved[i].session_pk,  # type: ignore[union-attr]
    )
    with transaction.atomic():
        batch.prefetch([r for i in order if (r := resolved[i]) is not None])
        for index in order:
            request = resolved[index]
            assert request is not None
            try:
                resolved[index], results[index] = _apply_one(request, batch)
            except SessionError as exc:
                results[index] = exc
        _write(batch)
    return resolved, [r for r in results if r is not None]


# A batch of at most this many entries is written by one statement on PostgreSQL (heads,
# producers and entries); a larger one by a statement each, its entries by COPY, which costs
# less CPU per row from about 20 rows on (psycopg quotes the arrays' items in Python).
TOGETHER_MOST = 20


def _write(batch: _Batch) -> None:
    """Write what the batch judged: the sessions' heads, producers, entries and changes.

    On PostgreSQL a batch of up to TOGETHER_MOST entries for several sessions or producers
    (an agent's streaming appends) takes one statement (the heads and producers are updated by
    data-modifying CTEs of the entries' INSERT): two or three round trips fewer per commit, and
    less Python than the three statements cost (issue #25).
    """
    batch.flush()
    heads = [[row.head, row.added, pk] for pk, row in batch.rows.items() if row.written]
    updates = _producer_updates(batch)
    # Only where it replaces three statements: for one session's head and its entries alone,
    # psycopg's quoting of the arrays costs more than the statement it saves.
    replaces = bool(updates) or len(heads) > 1
    if connection.vendor == "postgresql" and replaces and 0 < len(batch.entries) <= TOGETHER_MOST:
        _write_together(batch, heads, updates)
    else:
        _update_heads(batch, heads)
        _update_producers(batch, updates)
        _insert_entries(batch.entries)
    for pk, row in batch.rows.items():
        if row.changes:
            Session.objects.filter(pk=pk).update(**row.changes)


def _update_heads(batch: _Batch, heads: list[list[Any]]) -> None:
    table = connection.ops.quote_name(Session._meta.db_table)
    sql = (
        f"UPDATE {table} SET head = %s, size_bytes = size_bytes + %s, "
        "last_activity = %s WHERE id = %s"
    )
    with connection.cursor() as cursor:
        if len(heads) == 1:
            head, added, pk = heads[0]
            cursor.execute(sql, [head, added, batch.now, pk])
        elif heads and connection.vendor == "postgresql":  # one statement over arrays
            cursor.execute(_heads_update_sql(), [batch.now, *_columns(heads)])
        elif heads:
            cursor.executemany(sql, [[head, added, batch.now, pk] for head, added, pk in heads])


def _write_together(batch: _Batch, heads: list[list[Any]], updates: list[list[Any]]) -> None:
    params: list[Any] = []
    if heads:
        params += [batch.now, *_columns(heads)]
    if updates:
        params += [batch.now, *_producer_columns(updates)]
    params += [batch.now, *_columns(batch.entries)[:5]]
    with connection.cursor() as cursor:
        cursor.execute(_together_sql(bool(heads), bool(updates)), params)


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


@functools.cache
def _together_sql(heads: bool, producers: bool) -> str:
    ctes = []
    if heads:
        ctes.append(f"heads AS ({_heads_update_sql()})")
    if producers:
        ctes.append(f"producers AS ({_producers_update_sql()})")
    table = connection.ops.quote_name(Entry._meta.db_table)
    return (
        (f"WITH {', '.join(ctes)} " if ctes else "")
        + f"INSERT INTO {table} ({', '.join(COPY_COLUMNS)}) "
        "SELECT e.session_id, e.seq, e.type, e.run, e.body, %s "
        "FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::bytea[]) "
        "AS e(session_id, seq, type, run, body)"
    )


@functools.cache
def _heads_update_sql() -> str:
    table = connection.ops.quote_name(Session._meta.db_table)
    return (
        f"UPDATE {table} AS s SET head = v.head, size_bytes = s.size_bytes + v.added, "
        "last_activity = %s FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) "
        "AS v(head, added, id) WHERE s.id = v.id"
    )


# What the database refuses for one request's values (a constraint, a value a column cannot
# hold): the batch is written again request by request, so only that request fails. A lost
# connection or a server going down is neither: it fails the batch, and every caller hears it.
REFUSED_VALUES = (IntegrityError, DataError)


def _unstorable(exc: DataError) -> BadRequest:
    """The caller's value is what the database refused: a 400; its words go to the log only."""
    logger.info("append refused by the database: %s", exc)
    return BadRequest("a value of this append cannot be stored", reason="unstorable")


def commit_isolated(pendings: Sequence[Pending]) -> Results:
    """Commit a batch; if the database refuses it for a value, commit each request alone."""
    try:
        return commit(pendings)
    except REFUSED_VALUES as exc:
        if len(pendings) == 1:
            if isinstance(exc, DataError):
                return [None], [_unstorable(exc)]
            raise
        logger.warning("group commit of %d appends failed; retrying them one by one", len(pendings))
    resolved: list[AppendRequest | None] = []
    results: list[AppendResult | SessionError] = []
    for pending in pendings:
        try:
            one, result = commit([pending])
        except DataError as exc:
            one, result = [None], [_unstorable(exc)]
        except IntegrityError as exc:
            one, result = [None], [SessionError(f"append refused by the database: {exc}")]
        resolved.extend(one)
        results.extend(result)
    return resolved, results


# --- inserting entries -----------------------------------------------------------------------


def _insert_entries(rows: list[tuple[int, int, str, str, bytes, datetime]]) -> None:
    """Insert entries: one INSERT for one, COPY on PostgreSQL for more (several times faster
    than an INSERT of many rows), one bulk INSERT elsewhere."""
    if not rows:
        return
    table = connection.ops.quote_name(Entry._meta.db_table)
    if len(rows) == 1:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(COPY_COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s)",
                rows[0],
            )
        return
    if connection.vendor != "postgresql":
        entries = [Entry(**dict(zip(COPY_COLUMNS, row, strict=True))) for row in rows]
        Entry.objects.bulk_create(entries, batch_size=500)
        return
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def seed(session_pk: int, first: int, items: Sequence[Item], now: datetime) -> None:
    """Write the entries a session is created with, from offset ``first``; the caller holds
    the transaction that created the row with its head already past them."""
    _insert_entries(
        [
            (session_pk, seq, item.type, item.run, _bytes(item.body), now)
            for seq, item in enumerate(items, start=first)
        ]
    )


def _bytes(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else body


# --- the one-statement append ----------------------------------------------------------------


def _append_by_statement(request: AppendRequest) -> AppendResult | None:
    sql, params = append_statement(request, timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return statement_result(request, [row[0] for row in cursor.fetchall()])


def append_statement(request: AppendRequest, now: datetime) -> tuple[str, list[Any]]:
    """The one PostgreSQL statement of a plain append, ``RETURNING`` the entries' offsets.

    It advances the head of a live session (not closed, deleted or expired, not past
    ``max_bytes``) and inserts the entries in one round trip, with no BEGIN and no separate
    COMMIT: a lone sequential writer pays for one statement instead of five.
    """
    items = request.items
    size = sum(i.size for i in items)
    params: list[Any] = [len(items), size, now]
    if request.ttl is not None:
        params.append(now + timedelta(seconds=request.ttl))
    params += [request.session_pk, now]
    if request.max_bytes is not None:
        params += [size, request.max_bytes]
    sql = _append_sql(request.ttl is not None, request.max_bytes is not None, len(items) == 1)
    if len(items) == 1:  # the common append: plain values, which cost less to send than arrays
        item = items[0]
        return sql, [*params, request.session_pk, item.type, item.run, _bytes(item.body), now]
    types, runs, bodies = (
        [i.type for i in items],
        [i.run for i in items],
        [_bytes(i.body) for i in items],
    )
    return sql, [*params, request.session_pk, len(items), now, types, runs, bodies]


@functools.cache
def _append_sql(touch: bool, limited: bool, single: bool) -> str:
    table = connection.ops.quote_name(Session._meta.db_table)
    expires = ", expires_at = %s" if touch else ""
    limit = " AND size_bytes + %s <= %s" if limited else ""
    update = (
        f"UPDATE {table} SET head = head + %s, size_bytes = size_bytes + %s, "
        f"last_activity = %s{expires} WHERE id = %s AND NOT closed AND NOT deleted "
        f"AND (expires_at IS NULL OR expires_at > %s){limit} RETURNING head"
    )
    insert = f"INSERT INTO {connection.ops.quote_name(Entry._meta.db_table)}"
    columns = ", ".join(COPY_COLUMNS)
    if single:
        return (
            f"WITH u AS ({update}) {insert} ({columns}) "
            "SELECT %s, u.head, %s::text, %s::text, %s::bytea, %s FROM u RETURNING seq"
        )
    return (
        f"WITH u AS ({update}) {insert} ({columns}) "
        "SELECT %s, u.head - %s + i.k, i.type, i.run, i.body, %s "
        "FROM u, unnest(%s::text[], %s::text[], %s::bytea[]) "
        "WITH ORDINALITY AS i(type, run, body, k) RETURNING seq"
    )


def statement_result(request: AppendRequest, seqs: list[int]) -> AppendResult | None:
    """What ``append_statement`` did: None when it wrote nothing (the full path says why)."""
    if not seqs:
        return None
    head = max(seqs)
    return AppendResult(head - len(request.items) + 1, head, head=head)
