"""Forks: what a session made with the Durable Streams door's ``Stream-Forked-From`` inherits.

A fork shares its source's entries ``1..fork_seq`` (and, below the source's own fork point,
the older source's); its own entries start at ``fork_seq + 1``. The log's reads and folds come
here when a session's own entries do not start where they were asked for, so every door (REST,
WebSocket, AG-UI, AI SDK, Durable Streams, the feedback door, a claimed turn's conversation,
compaction, the dataset export) reads a fork as one conversation.

A fork compacted past its fork point is read as any other session: its snapshot holds what it
inherited. Forks are few, and a walk is a query per ancestor.
"""

from __future__ import annotations

import sys
from typing import Any

from django.db import connection, models

from sessions_app.domain.fold import SessionState, fold
from sessions_app.models import Entry, Session

try:
    from orjson import loads
except ImportError:  # pragma: no cover
    from json import loads  # type: ignore[assignment]

BATCH = 5000  # inherited entries a fold reads at a time

Part = tuple[int, int, int]  # (session, own entries above, read up to): one source's share
Rows = list[tuple[int, bytes]]


def is_fork(parent: int | None, fork_seq: int, tail: int) -> bool:
    """A fork that still reads part of its history from its source (its compaction has not
    reached its fork point: once it has, its snapshot holds all it inherited)."""
    return parent is not None and fork_seq > 0 and tail < fork_seq


def fork_point(session_pk: int) -> tuple[int, int] | None:
    """(source, fork offset) of a session that reads part of its history from a source."""
    row = Session.objects.filter(pk=session_pk).values_list("forked_from_id", "fork_seq", "tail")
    found = row.first()
    if found is None or not is_fork(*found):
        return None
    return int(found[0]), int(found[1])


def ancestry(parent: int | None, upto: int) -> list[Part]:
    """The sources a fork of ``parent`` at ``upto`` reads, oldest first. The walk stops at a
    source that is no fork (or was compacted past its fork point: its snapshot holds the rest)."""
    found: list[Part] = []
    while parent is not None and upto > 0:
        row = Session.objects.filter(pk=parent).values_list("forked_from_id", "fork_seq", "tail")
        source = row.first()
        if source is None:
            break
        grandparent, fork_seq, tail = source
        forked = is_fork(grandparent, fork_seq, tail)
        found.append((parent, fork_seq if forked else 0, upto))
        if not forked:
            break
        parent, upto = grandparent, min(upto, fork_seq)
    return found[::-1]


def read_up_to(source: int) -> int:
    """How far compaction may remove ``source``'s entries: a fork reads them from above its
    own tail up to its fork point, so not past the lowest tail among the forks still reading
    (usually 0: a source that forks read keeps its entries until they no longer do)."""
    reading = Session.objects.filter(
        forked_from_id=source, fork_seq__gt=0, tail__lt=models.F("fork_seq")
    ).aggregate(lowest=models.Min("tail"))["lowest"]
    return int(reading) if reading is not None else sys.maxsize


def inherited_tail(parent: int, upto: int) -> int:
    """The highest offset below ``upto`` whose entry a fork of ``parent`` can no longer read:
    its sources' retention (a fork made of a compacted source, or one compacted before forks
    held their sources back). A fork's readers treat it as the fork's own tail."""
    gone = 0
    for pk, _above, part_upto in ancestry(parent, upto):
        tail = Session.objects.filter(pk=pk).values_list("tail", flat=True).first() or 0
        gone = max(gone, min(int(tail), part_upto))
    return gone


def read_inherited(parts: list[Part], after: int, limit: int) -> Rows:
    """The inherited entries above ``after``, in order, at most ``limit``."""
    rows: Rows = []
    for pk, above, upto in parts:
        if len(rows) >= limit:
            break
        if upto > after:
            rows.extend(_range(pk, max(after, above), upto, limit - len(rows)))
    return rows


def bounded(rows: Rows, limit: int, max_bytes: int | None) -> Rows:
    """``rows`` cut as ``log.read`` cuts a page: at most ``limit``, and none after the entry
    that reaches ``max_bytes`` (so always at least one)."""
    rows = rows[:limit]
    if max_bytes is None:
        return rows
    size = 0
    for i, (_seq, body) in enumerate(rows):
        if size >= max_bytes:
            return rows[:i]
        size += len(body)
    return rows


def start_state(
    snapshot: Any, tail: int, checkpoint: Any, checkpoint_seq: int, upto: int | None = None
) -> SessionState:
    """Where a fold of a session's own log begins: its checkpoint when that covers the stored
    snapshot, else the snapshot; with ``upto``, neither past that offset (a source read only
    up to a fork point)."""
    usable = checkpoint is not None and checkpoint_seq >= tail
    if usable and (upto is None or checkpoint_seq <= upto):
        return SessionState.from_dict(checkpoint, checkpoint_seq)
    if upto is not None and tail > upto:
        return SessionState()  # retention removed what the fork inherits from here
    return SessionState.from_dict(snapshot, tail) if snapshot else SessionState(seq=tail)


def inherited(parent: int, upto: int) -> SessionState:
    """The fold of what a fork of ``parent`` at ``upto`` inherits (its ``seq`` is ``upto``)."""
    parts = ancestry(parent, upto)
    state = SessionState()
    if parts:
        root, _above, root_upto = parts[0]
        columns = ("snapshot", "tail", "checkpoint", "checkpoint_seq")
        row = Session.objects.filter(pk=root).values_list(*columns).first()
        if row is not None:
            snapshot, tail, checkpoint, checkpoint_seq = row
            state = start_state(snapshot, tail, checkpoint, checkpoint_seq, upto=root_upto)
    after = state.seq
    while after < upto:
        batch = read_inherited(parts, after, BATCH)
        fold(((seq, loads(body)) for seq, body in batch), state)
        if len(batch) < BATCH:
            break
        after = batch[-1][0]
    state.seq = upto
    return state


def _range(pk: int, after: int, upto: int, limit: int) -> Rows:
    q = connection.ops.quote_name
    table = q(Entry._meta.db_table)
    sql = (
        f"SELECT {q('seq')}, {q('body')} FROM {table} WHERE {q('session_id')} = %s "
        f"AND {q('seq')} > %s AND {q('seq')} <= %s ORDER BY {q('seq')} LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [pk, after, upto, limit])
        return [(seq, bytes(body)) for seq, body in cursor.fetchall()]
