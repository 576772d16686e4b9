"""Runs in the database, kept in step with the log inside the appending transaction.

``RunTracker`` sees each append before its offsets are allocated: it refuses what the run's
lifecycle forbids (appending to a run that ended, steering one that is not running) so that
nothing is written, and afterwards records what the append did to its runs. It keeps the
rows it changed and writes them all when the commit asks (``flush``): one INSERT for the
runs the batch started, one pipelined batch of UPDATEs for the others.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import connection

from sessions_app.conf import setting
from sessions_app.domain.errors import BadEvent
from sessions_app.domain.judgement import USAGE, add_usage
from sessions_app.domain.runs import RUN_EVENTS, RunStatus, next_status
from sessions_app.models import Run
from sessions_app.rows import insert_rows, update_rows

if TYPE_CHECKING:
    from sessions_app.log import AppendRequest

HEARTBEAT_WRITE_EVERY = timedelta(seconds=1)


@dataclass
class _Change:
    run_id: str
    status: RunStatus
    index: int  # of the item in the request
    data: dict[str, Any]
    agent: str = ""


@dataclass
class RunTracker:
    """Per transaction: the runs it has read or changed, by (session, run id)."""

    runs: dict[tuple[int, str], Run | None] = field(default_factory=dict)
    # Rows changed and not yet written (``flush``), in the order they were first changed.
    dirty: dict[tuple[int, str], Run] = field(default_factory=dict)

    def prefetch(self, requests: Sequence[AppendRequest]) -> None:
        """Read the runs a batch's requests name with one statement (the log's commit calls
        it once the batch's sessions are locked); ``plan`` then finds them here."""
        read = self.prefetch_read(requests)
        if read is not None:
            with connection.cursor() as cursor:
                cursor.execute(*read)
                self.prefetched(requests, list(cursor.fetchall()))

    def prefetch_read(self, requests: Sequence[AppendRequest]) -> tuple[str, list[Any]] | None:
        """The statement ``prefetch`` reads with (None: nothing worth a statement), for a
        caller that sends it together with others; its rows go to ``prefetched``."""
        wanted = self._wanted(requests)
        if len(wanted) < 2:  # one alone: plan asks for it as before
            return None
        pks, ids = sorted({pk for pk, _ in wanted}), sorted({run for _, run in wanted})
        return _run_select(connection.vendor, len(pks), len(ids)), [*pks, *ids]

    def prefetched(self, requests: Sequence[AppendRequest], rows: list[tuple[Any, ...]]) -> None:
        wanted = self._wanted(requests)
        for row in _runs_from(rows):
            if (row.session_id, row.run_id) in wanted:
                self.runs.setdefault((row.session_id, row.run_id), row)
        for key in wanted:
            self.runs.setdefault(key, None)

    def _wanted(self, requests: Sequence[AppendRequest]) -> set[tuple[int, str]]:
        wanted: set[tuple[int, str]] = set()
        for request in requests:
            for item in request.items:
                if item.run:
                    wanted.add((request.session_pk, item.run))
                parent = (item.data or {}).get("parentRunId")
                if isinstance(parent, str):
                    wanted.add((request.session_pk, parent))
        return wanted - self.runs.keys()

    def plan(self, request: AppendRequest) -> list[_Change]:
        """Check the request against its runs; return the changes, or raise (nothing written)."""
        if not any(item.run or item.type == "CANCEL" for item in request.items):
            return []
        self._load(request)
        pk = request.session_pk
        status = {
            run_id: (row.status if row else None)
            for (spk, run_id), row in self.runs.items()
            if spk == pk
        }
        changes: list[_Change] = []
        for index, item in enumerate(request.items):
            data = item.data or {}
            targets = (
                [item.run]
                if item.run
                else (self._active(pk, status) if item.type == "CANCEL" else [])
            )
            for run_id in targets:
                value = status.get(run_id)
                current = RunStatus(value) if value else None
                new = next_status(current, item.type, run_id, data)
                if item.type == "RUN_STARTED":
                    self._check_parent(pk, data, status)
                if new is not None:
                    status[run_id] = new.value
                    changes.append(_Change(run_id, new, index, data, item.agent))
        return changes

    def apply(
        self, request: AppendRequest, changes: list[_Change], first_seq: int, now: Any
    ) -> list[tuple[Run, _Change]]:
        """Record the changes; return the runs they ended, each with its final change."""
        pk = request.session_pk
        touched: dict[str, Run] = {}  # saved once each: a run started and ended in one append
        ended = []
        for change in changes:
            row = self.runs.get((pk, change.run_id))
            if row is None:
                row = self._start(pk, change, first_seq + change.index)
            self._move(row, change, now)
            row.heartbeat_at = now
            self.runs[(pk, change.run_id)] = touched[change.run_id] = row
            if change.status.is_final:
                ended.append((row, change))
        for run_id, row in touched.items():
            self.dirty[(pk, run_id)] = row
        self._beat(pk, {item.run for item in request.items if item.run} - set(touched), now)
        self._add_usage(pk, request)
        for item in request.items:
            if item.type == "CONTROL_ACK":
                _observe_ack(pk, item.data or {}, now)
        return ended

    def flush(self) -> None:
        """Write the changed rows: the new ones with one INSERT (a sub-run after the parent
        it names when both start in this batch), the stored ones with one batch."""
        if not self.dirty:
            return
        rows, self.dirty = list(self.dirty.values()), {}
        stored = [row for row in rows if row.pk is not None]
        new = [row for row in rows if row.pk is None]
        while new:
            ready = [row for row in new if _parent_stored(row)]
            if not ready:  # pragma: no cover - a parent is always changed before its child
                raise RuntimeError("a new run's parent is neither stored nor in the batch")
            insert_rows(ready)
            new = [row for row in new if row.pk is None]
        update_rows(stored)

    def _beat(self, pk: int, run_ids: set[str], now: Any) -> None:
        """Every append to a run is a sign of life of its agent (written at most once a second)."""
        stale = []
        for run_id in run_ids:
            row = self.runs.get((pk, run_id))
            if row is not None and (
                row.heartbeat_at is None or now - row.heartbeat_at > HEARTBEAT_WRITE_EVERY
            ):
                stale.append(row)
        if stale:
            # Plain SQL: a streaming run's appends write this about once a second, and the
            # ORM's query building cost more CPU than the statement (issue #25's profile).
            pks = [row.pk for row in stale]
            with connection.cursor() as cursor:
                stamp = connection.ops.adapt_datetimefield_value(now)
                cursor.execute(_beat_sql(len(pks)), [stamp, *pks])
            for row in stale:
                row.heartbeat_at = now

    # --- helpers -------------------------------------------------------------------------

    def _add_usage(self, pk: int, request: AppendRequest) -> None:
        """A run's usage reports (``sessions.USAGE``) add up on its row, for the admin."""
        for item in request.items:
            data = item.data or {}
            row = self.runs.get((pk, item.run)) if item.type == "CUSTOM" else None
            if (
                row is not None
                and data.get("name") == USAGE
                and isinstance(data.get("value"), dict)
            ):
                row.usage = add_usage(row.usage, data["value"])
                self.dirty[(pk, item.run)] = row

    def _load(self, request: AppendRequest) -> None:
        pk = request.session_pk
        wanted = {item.run for item in request.items if item.run}
        wanted |= {
            p
            for item in request.items
            if isinstance(p := (item.data or {}).get("parentRunId"), str)
        }
        missing = {run_id for run_id in wanted if (pk, run_id) not in self.runs}
        if any(item.type == "CANCEL" and not item.run for item in request.items):
            query = (
                Run.objects.filter(session_id=pk, run_id__in=missing)
                if missing
                else Run.objects.none()
            ) | Run.objects.filter(
                session_id=pk, status__in=[RunStatus.RUNNING, RunStatus.CANCELLING]
            )
            found = list(query)
        else:  # every append to a run asks for it: plain SQL, no query building
            found = _runs_named([pk], sorted(missing)) if missing else []
        for row in found:
            self.runs.setdefault((pk, row.run_id), row)
        for run_id in missing:
            self.runs.setdefault((pk, run_id), None)

    def _active(self, pk: int, status: dict[str, Any]) -> list[str]:
        return [
            run_id for run_id, value in status.items() if value and not RunStatus(value).is_final
        ]

    def _check_parent(self, pk: int, data: dict[str, Any], status: dict[str, Any]) -> None:
        parent = data.get("parentRunId")
        if parent is not None and not status.get(parent):
            raise BadEvent(f"parentRunId {parent!r} is not a run of this session")

    def _start(self, pk: int, change: _Change, seq: int) -> Run:
        parent_id = change.data.get("parentRunId")
        parent = self.runs.get((pk, parent_id)) if isinstance(parent_id, str) else None
        turn = change.data.get("turn")  # checked by the turn tracker: the turn is this run's
        return Run(
            session_id=pk,
            run_id=change.run_id,
            parent=parent,
            agent=change.agent,
            started_seq=seq,
            turn_id=turn if isinstance(turn, int) else None,
        )

    def _move(self, row: Run, change: _Change, now: Any) -> None:
        row.status = change.status.value
        if change.status is RunStatus.CANCELLING and row.cancel_deadline is None:
            row.cancel_deadline = now + timedelta(seconds=setting("CANCEL_ACK_TIMEOUT"))
            row.reason = str(change.data.get("reason") or "user")[:200]
        if change.status.is_final:
            row.ended_at = now
            reason = (
                change.data.get("reason") or change.data.get("message") or change.data.get("code")
            )
            if reason or change.status is not RunStatus.CANCELLED:
                row.reason = str(reason or "")[:200]


def _parent_stored(row: Run) -> bool:
    """Whether the run's parent, if any, has its row (a parent started in the same batch
    is inserted first: the child takes its key)."""
    parent = _PARENT.get_cached_value(row, default=None)
    return parent is None or parent.pk is not None


_PARENT = Run._meta.get_field("parent")


@functools.lru_cache(maxsize=64)
def _beat_sql(count: int) -> str:
    table = connection.ops.quote_name(Run._meta.db_table)
    column = connection.ops.quote_name(str(Run._meta.get_field("heartbeat_at").column))
    return f"UPDATE {table} SET {column} = %s WHERE id IN ({', '.join(['%s'] * count)})"


@functools.lru_cache(maxsize=256)
def _run_select(vendor: str, sessions: int, runs: int) -> str:
    """The SELECT of every column of the runs of these sessions with these ids."""
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in Run._meta.concrete_fields)
    table = connection.ops.quote_name(Run._meta.db_table)
    return (
        f"SELECT {columns} FROM {table} WHERE session_id IN ({', '.join(['%s'] * sessions)}) "
        f"AND run_id IN ({', '.join(['%s'] * runs)})"
    )


def _runs_named(session_pks: list[int], run_ids: list[str]) -> list[Run]:
    """The runs of these sessions with these ids, as the ORM would load them (the same
    converters), without building a query."""
    sql = _run_select(connection.vendor, len(session_pks), len(run_ids))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*session_pks, *run_ids])
        return _runs_from(list(cursor.fetchall()))


def _runs_from(rows: list[tuple[Any, ...]]) -> list[Run]:
    """Run rows read by ``_run_select``, as the ORM would load them (the same converters)."""
    if not rows:
        return []
    fields = Run._meta.concrete_fields
    converting = [
        (f.cached_col, [*connection.ops.get_db_converters(f.cached_col),
                        *f.get_db_converters(connection)])
        for f in fields
    ]  # fmt: skip
    names = [f.attname for f in fields]
    found = []
    for raw in rows:
        values = []
        for value, (col, converters) in zip(raw, converting, strict=True):
            for convert in converters:
                value = convert(value, col, connection)
            values.append(value)
        found.append(Run.from_db(connection.alias, names, values))
    return found


def needs_data(event_type: str) -> bool:
    """Whether the tracker reads this event type's ``data``."""
    return event_type in RUN_EVENTS or event_type in ("TEXT_MESSAGE_START", "CUSTOM")


def heartbeat(session_pk: int, run_id: object) -> bool:
    """Record that the run's agent is alive; False when the run is not running."""
    from django.utils import timezone

    running = Run.objects.filter(
        session_id=session_pk, run_id=run_id, status=RunStatus.RUNNING.value
    )
    return bool(running.update(heartbeat_at=timezone.now()))


def _observe_ack(session_pk: int, data: dict[str, Any], now: Any) -> None:
    from sessions_app import metrics
    from sessions_app.domain.errors import BadOffset
    from sessions_app.domain.offsets import parse_offset
    from sessions_app.models import Entry

    action = str(data.get("action"))
    metrics.CONTROL_ACKS.labels(action).inc()
    if action != "cancel":
        return
    try:
        seq = parse_offset(data.get("control"))
    except BadOffset:
        return
    asked = (
        Entry.objects.filter(session_id=session_pk, seq=seq)
        .values_list("created_at", flat=True)
        .first()
    )
    if asked is not None:
        metrics.CANCEL_LATENCY.observe((now - asked).total_seconds())
