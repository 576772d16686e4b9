"""Reading a session's entries, its folded state, and retention (compaction).

``read`` returns entries after an offset; ``fold_session`` the folded state (from a
checkpoint when one is usable); ``compact`` folds old entries into the stored snapshot and
deletes them.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

from django.db import DatabaseError, connection, models, transaction

from sessions_app.domain.errors import NotFound
from sessions_app.domain.fold import SessionState, fold
from sessions_app.log.executors import run_read
from sessions_app.log.forks import (
    ancestry,
    bounded,
    fork_point,
    inherited,
    inherited_tail,
    is_fork,
    read_inherited,
    read_up_to,
    start_state,
)
from sessions_app.models import Entry, Session

logger = logging.getLogger("sessions_app.log")

try:  # orjson parses the log's JSON about three times faster: it dominates snapshot time
    from orjson import loads
except ImportError:  # pragma: no cover
    loads = json.loads  # type: ignore[assignment]

FOLD_BATCH = 5000
# A snapshot that folds at least this many entries leaves a checkpoint for the next one.
CHECKPOINT_ENTRIES = 1000


def read(
    session_pk: int, after: int, limit: int, max_bytes: int | None = None
) -> list[tuple[int, bytes]]:
    """Entries with offsets above ``after``, in order: at most ``limit``, and with
    ``max_bytes`` none after the one that reaches that many bytes (so always at least one).
    A fork's entries up to its fork point are its source's (``forks``)."""
    rows = _read_own(session_pk, after, limit, max_bytes)
    if rows and rows[0][0] == after + 1:
        return rows
    # The first entry asked for is not the session's own: a fork reads it from its source.
    point = fork_point(session_pk)
    if point is None or after >= point[1]:
        return rows
    older = read_inherited(ancestry(*point), after, limit)
    return bounded(older + rows, limit, max_bytes)


def _read_own(
    session_pk: int, after: int, limit: int, max_bytes: int | None
) -> list[tuple[int, bytes]]:
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
    return await run_read(read, session_pk, after, limit, max_bytes)


_HEAD = ("head", "tail", "forked_from_id", "fork_seq")


def head_and_tail(session_pk: int) -> tuple[int, int]:
    """The session's last offset and the offset below which its entries can no longer be read
    (retention; for a fork, its sources' too)."""
    row = Session.objects.filter(pk=session_pk).values_list(*_HEAD).first()
    if row is None:
        raise NotFound("no such session")
    return _head_tail(*row)


def heads_and_tails(pks: list[int]) -> list[tuple[int, int] | NotFound]:
    """``head_and_tail`` of many sessions in one query (for ``batches.Batcher``)."""
    found = dict[int, tuple[int, int]]()
    for chunk in _chunks(sorted(set(pks))):
        rows = Session.objects.filter(pk__in=chunk).values_list("pk", *_HEAD)
        found.update((pk, _head_tail(*rest)) for pk, *rest in rows)
    return [found.get(pk) or NotFound("no such session") for pk in pks]


def _head_tail(head: int, tail: int, parent: int | None, fork_seq: int) -> tuple[int, int]:
    if is_fork(parent, fork_seq, tail):
        assert parent is not None
        tail = max(tail, inherited_tail(parent, fork_seq))
    return int(head), int(tail)


def read_many(asked: list[tuple[int, int, int, int | None]]) -> list[list[tuple[int, bytes]]]:
    """``read`` for many (session, after, limit, max_bytes) in one thread hop; the same read
    asked several times (the sockets of one session subscribing together) is read once."""
    found = {ask: read(*ask) for ask in dict.fromkeys(asked)}
    return [found[ask] for ask in asked]


def _chunks(values: list[int], size: int = 5000) -> list[list[int]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def fold_session(session_pk: int) -> SessionState:
    """The folded state of a session: its stored snapshot plus every retained entry.

    It starts from the session's checkpoint when one is usable, and leaves a new checkpoint
    when it had to fold at least ``CHECKPOINT_ENTRIES`` entries, so that a long session is
    folded once, not on every snapshot request.
    """
    row = Session.objects.filter(pk=session_pk).values_list(*_START).first()
    if row is None:
        raise NotFound("no such session")
    state = _start(*row)
    after = state.seq
    start = _began(row, state)
    while True:
        batch = read(session_pk, after, FOLD_BATCH)
        fold(((seq, loads(body)) for seq, body in batch), state)
        if len(batch) < FOLD_BATCH:
            break
        after = batch[-1][0]
    if state.seq - start >= CHECKPOINT_ENTRIES:
        _save_checkpoint(session_pk, state)
    return state


_START = ("snapshot", "tail", "checkpoint", "checkpoint_seq", "forked_from_id", "fork_seq")


def _began(row: Sequence[Any], state: SessionState) -> int:
    """Where the fold's work began: a fork's inherited fold counts too (its checkpoint saves
    folding its source's entries again), so from its own tail."""
    _snapshot, tail, checkpoint, checkpoint_seq, parent, fork_seq = row
    if (checkpoint is None or checkpoint_seq < tail) and is_fork(parent, fork_seq, tail):
        return int(tail)
    return state.seq


def _start(
    snapshot: Any,
    tail: int,
    checkpoint: Any,
    checkpoint_seq: int,
    parent: int | None = None,
    fork_seq: int = 0,
) -> SessionState:
    """Where a fold begins: the checkpoint when it covers the stored snapshot, else a fork's
    inherited history, else the snapshot."""
    if (checkpoint is None or checkpoint_seq < tail) and is_fork(parent, fork_seq, tail):
        assert parent is not None
        return inherited(parent, fork_seq)
    return start_state(snapshot, tail, checkpoint, checkpoint_seq)


def fold_sessions(session_pks: Collection[int]) -> dict[int, SessionState]:
    """``fold_session`` of several sessions in two queries, however many (a turn claim's
    conversations: one fold per claimed turn was a tenth of the server's CPU per turn in
    issue #20's dispatch profile). Sessions that no longer exist are left out; when the
    entries to fold pass ``FOLD_BATCH`` the sessions are folded one by one instead."""
    rows = Session.objects.filter(pk__in=list(session_pks)).values_list("pk", *_START)
    states, began = {}, {}
    for pk, *rest in rows:
        states[pk] = _start(*rest)
        began[pk] = _began(rest, states[pk])
    if not states:
        return {}
    starts = {pk: state.seq for pk, state in states.items()}
    batch = _read_many(starts, FOLD_BATCH + 1)
    if len(batch) > FOLD_BATCH:
        return {pk: fold_session(pk) for pk in states}
    for pk, entries in itertools.groupby(batch, key=lambda row: row[0]):
        fold(((seq, loads(body)) for _, seq, body in entries), states[pk])
    for pk, state in states.items():
        if state.seq - began[pk] >= CHECKPOINT_ENTRIES:
            _save_checkpoint(pk, state)
    return states


def _read_many(starts: dict[int, int], limit: int) -> list[tuple[int, int, bytes]]:
    """(session, offset, body) of the entries above each session's start, in order."""
    q = connection.ops.quote_name
    where = " OR ".join([f"({q('session_id')} = %s AND {q('seq')} > %s)"] * len(starts))
    sql = (
        f"SELECT {q('session_id')}, {q('seq')}, {q('body')} FROM {q(Entry._meta.db_table)} "
        f"WHERE {where} ORDER BY {q('session_id')}, {q('seq')} LIMIT %s"
    )
    params = [value for pair in sorted(starts.items()) for value in pair]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return [(pk, seq, bytes(body)) for pk, seq, body in cursor.fetchall()]


def _save_checkpoint(session_pk: int, state: SessionState) -> None:
    try:
        Session.objects.filter(pk=session_pk, checkpoint_seq__lt=state.seq).update(
            checkpoint=state.as_dict(), checkpoint_seq=state.seq
        )
    except DatabaseError:  # only a cache: the next snapshot folds a little more
        logger.warning("could not save the checkpoint of session %s", session_pk, exc_info=True)


def now_ms() -> int:
    return int(time.time() * 1000)


# --- retention -------------------------------------------------------------------------------


def compact(session_pk: int, up_to: int) -> int:
    """Fold entries ``tail+1 .. up_to`` into the stored snapshot and delete them.

    Readers then see the same fold as before (snapshot + the rest), and a resume below the
    new tail gets "offset expired". Returns how many entries were removed.
    """
    with transaction.atomic():
        session = Session.objects.select_for_update().filter(pk=session_pk).first()
        if session is None:
            raise NotFound("no such session")
        head = session.head
        up_to = min(up_to, head, read_up_to(session_pk))
        if up_to <= session.tail:
            return 0
        forked = is_fork(session.forked_from_id, session.fork_seq, session.tail)
        if forked and up_to < session.fork_seq:
            return 0  # nothing below the fork point is the fork's own
        snapshot = None
        if session.is_json:
            if forked and session.forked_from_id is not None:
                # the snapshot holds what the fork inherits: it reads its source no more
                base = inherited(session.forked_from_id, session.fork_seq)
            elif session.snapshot:
                base = SessionState.from_dict(session.snapshot, session.tail)
            else:
                base = None
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
