"""``python manage.py sessions export-dataset``: sessions as a fine-tuning dataset (JSONL).

Streams: sessions are read in chunks (``.iterator(chunk_size=...)``), each chunk's entries in
one query (on PostgreSQL one JSON array a session), each session folded on its own and
written out at once, so memory holds a few chunks, never the export; outside a transaction a
thread reads the next chunks while this one is folded. A fork's fold starts with the history
it inherits from its source. What a conversation is, the filters, the split and the card:
``sessions_app.domain.dataset``. The redaction hook is the operator's: a dotted path from the
``SESSIONS_EXPORT_REDACT`` setting or ``--redact`` (never a caller's).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from queue import Full, Queue
from typing import Any, Protocol

import orjson
from django.conf import settings
from django.db import connection, connections
from django.utils.module_loading import import_string

from sessions_app.domain.dataset import (
    SPLITS,
    Conversation,
    Exporter,
    Filters,
    Redactor,
    conversation,
    redact,
)
from sessions_app.domain.fold import SessionState, apply, apply_all
from sessions_app.log import forks, loads
from sessions_app.models import JSON_CONTENT_TYPE, Entry, Export, Run, Session

CHUNK = 200  # sessions a query reads (their entries come in one more query)
ENTRY_BUDGET = 20_000  # entries a chunk reads in one round trip (its memory bound)
AHEAD = 2  # chunks the fetch thread may read ahead of the fold (memory: AHEAD + 2 chunks)

# A session row as the export reads it.
COLUMNS = ("pk", "name", "created_at", "snapshot", "tail", "checkpoint", "checkpoint_seq",
           "head", "forked_from_id", "fork_seq")  # fmt: skip
Row = tuple[Any, ...]


class Writer(Protocol):
    """A text file or a command's stdout."""

    def write(self, text: str, /) -> object: ...


@dataclass(frozen=True)
class Options:
    since: datetime | None = None
    until: datetime | None = None
    filters: Filters = Filters()
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    redact: str | None = None  # dotted path; None: the setting, else the default
    chunk: int = CHUNK


@dataclass
class _Chunk:
    """A chunk of sessions and, unless it is over the entry budget, their entries: on
    PostgreSQL each session's as one JSON array (``(count, last seq, b"[...]")``), elsewhere
    as ``(session, seq, body)`` rows in order."""

    rows: list[Row]
    arrays: dict[int, tuple[int, int, bytes]] | None = None
    entries: list[tuple[int, int, bytes]] | None = None


def redactor(path: str | None) -> Redactor:
    """The operator's redaction function (``text -> (text, {kind: count})``)."""
    path = path or getattr(settings, "SESSIONS_EXPORT_REDACT", None)
    if not path:
        return redact
    found = import_string(path)
    if not callable(found):
        raise TypeError(f"{path} is not a function")
    return found  # type: ignore[no-any-return]


def folds(
    options: Options, ahead: bool | None = None
) -> Iterator[tuple[str, datetime, SessionState]]:
    """Each session's name, creation time and fold, oldest first, a chunk at a time.

    With ``ahead`` (the default outside a transaction) a thread with its own connection reads
    the next chunks while this one is folded: the database's time and the fold's overlap.
    Inside a transaction the reads stay on its connection (another could not see its rows).
    """
    if ahead is None:
        ahead = not connection.in_atomic_block
    chunks = (_fetch(rows, entries) for rows, entries in _chunks(options))
    for chunk in _read_ahead(chunks, AHEAD) if ahead else chunks:
        yield from _fold_chunk(chunk)


def _chunks(options: Options) -> Iterator[tuple[list[Row], int]]:
    """The matching sessions' rows, oldest first, in chunks of at most ``options.chunk``
    sessions or (a session more) ``ENTRY_BUDGET`` entries; with the entries they hold."""
    sessions = Session.objects.filter(content_type__istartswith=JSON_CONTENT_TYPE)
    if options.since:
        sessions = sessions.filter(created_at__gte=options.since)
    if options.until:
        sessions = sessions.filter(created_at__lt=options.until)
    if options.filters.agent is not None:
        sessions = sessions.filter(
            pk__in=Run.objects.filter(agent=options.filters.agent).values("session_id")
        )
    rows = sessions.order_by("created_at", "pk").values_list(*COLUMNS)
    chunk: list[Row] = []
    entries = 0
    for row in rows.iterator(chunk_size=options.chunk):
        chunk.append(row)
        entries += row[7] - _start(row)
        if len(chunk) >= options.chunk or entries >= ENTRY_BUDGET:
            yield chunk, entries
            chunk, entries = [], 0
    if chunk:
        yield chunk, entries


def _forked(row: Row) -> bool:
    """A fork whose own log still starts at the fork point: its fold starts from the history
    it inherits (a fork compacted past that point starts from its own snapshot)."""
    _pk, _name, _created, _snapshot, tail, _cp, _cp_seq, _head, parent, fork_seq = row
    return forks.is_fork(parent, fork_seq, tail)


def _start(row: Row) -> int:
    """The offset a session's own entries are read from: its checkpoint's, else its
    snapshot's (a fork's own entries all follow its inherited fold, so from its tail)."""
    _pk, _name, _created, _snapshot, tail, checkpoint, checkpoint_seq, *_ = row
    if _forked(row):
        return int(tail)
    return int(checkpoint_seq) if checkpoint is not None and checkpoint_seq >= tail else int(tail)


def _fetch(rows: list[Row], entries: int) -> _Chunk:
    """Read a chunk's entries in one round trip (within the budget; a longer chunk is read
    later, through a cursor, as it is folded)."""
    if entries > ENTRY_BUDGET:
        return _Chunk(rows)
    starts = [(row[0], _start(row)) for row in rows]
    if connection.vendor == "postgresql":
        return _Chunk(rows, arrays=_arrays(starts))
    return _Chunk(rows, entries=list(_entry_rows(rows).iterator(chunk_size=2000)))


def _entry_rows(rows: list[Row]) -> Any:
    return (
        Entry.objects.filter(session_id__in=[row[0] for row in rows])
        .order_by("session_id", "seq")
        .values_list("session_id", "seq", "body")
    )


def _arrays(starts: list[tuple[int, int]]) -> dict[int, tuple[int, int, bytes]]:
    """Each session's entries above its start as one JSON array, joined by PostgreSQL: one
    row a session instead of one an entry, and one parse a session instead of one an event."""
    with connection.cursor() as cursor:
        cursor.execute(_arrays_sql(), [[pk for pk, _ in starts], [start for _, start in starts]])
        return {pk: (count, last, body) for pk, count, last, body in cursor.fetchall()}


@functools.cache
def _arrays_sql() -> str:
    q = connection.ops.quote_name
    columns = {f.name: q(str(f.column)) for f in Entry._meta.concrete_fields}
    seq, body, session = columns["seq"], columns["body"], columns["session"]
    # One aggregate a session (LATERAL), each over its own index range: 0.043 ms of
    # PostgreSQL's CPU a conversation on the bench's data, where a join grouped by session
    # (sorting the chunk's rows first) took 0.058 and the rows one by one 0.048.
    return (
        "SELECT s.id, a.n, a.last, a.events FROM unnest(%s::bigint[], %s::bigint[]) "
        "AS s(id, after) CROSS JOIN LATERAL ("
        f"SELECT COUNT(*) AS n, MAX({seq}) AS last, "
        f"'['::bytea || string_agg({body}, ','::bytea ORDER BY {seq}) || ']'::bytea AS events "
        f"FROM {q(Entry._meta.db_table)} WHERE {session} = s.id AND {seq} > s.after) AS a "
        "WHERE a.n > 0"
    )


def _read_ahead(chunks: Iterator[_Chunk], depth: int) -> Iterator[_Chunk]:
    """``chunks`` computed by a thread of its own, at most ``depth`` ahead of the consumer.

    psycopg releases the GIL while it waits for PostgreSQL, so the next chunk's query runs
    while this thread folds and writes the current one. The thread's database connection is
    its own, closed when it ends; an error there is raised here.
    """
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put((False, chunk)):
                    return
            put((True, None))
        except BaseException as error:  # handed to the consumer, raised there
            put((True, error))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:  # a consumer that stopped early: the cursor, here
                close()
            connections.close_all()  # this thread's connections only

    thread = threading.Thread(target=produce, name="export-fetch", daemon=True)
    thread.start()
    try:
        while True:
            done, item = queue.get()
            if done:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _fold_chunk(chunk: _Chunk) -> Iterator[tuple[str, datetime, SessionState]]:
    if chunk.arrays is not None:
        for row in chunk.rows:
            state = _initial(row)
            found = chunk.arrays.get(row[0])
            if found is not None and not _fold_array(state, *found):
                state = _initial(row)  # not one event an entry: parsed entry by entry
                _fold_rows({row[0]: state}, _entry_rows([row]).iterator(chunk_size=2000))
            yield row[1], row[2], state
        return
    states = {row[0]: _initial(row) for row in chunk.rows}
    if chunk.entries is not None:
        _fold_rows(states, chunk.entries)
    else:  # over the budget: read through a server-side cursor, a few thousand rows at a time
        _fold_rows(states, _entry_rows(chunk.rows).iterator(chunk_size=2000))
    for row in chunk.rows:
        yield row[1], row[2], states.pop(row[0])


def _fold_array(state: SessionState, count: int, last: int, body: Any) -> bool:
    """Fold a session's entries joined into one JSON array; False (nothing folded) unless it
    parses into exactly one event an entry."""
    try:
        events = loads(body)
    except ValueError:
        return False
    if not isinstance(events, list) or len(events) != count:
        return False
    apply_all(state, last, events)
    return True


def _fold_rows(states: dict[int, SessionState], rows: Iterable[tuple[int, int, Any]]) -> None:
    """Fold ``(session, seq, body)`` rows, in order, into their sessions' states."""
    state = SessionState()
    current = None
    for session_id, seq, body in rows:
        if session_id != current:
            current, state = session_id, states[session_id]
        if seq > state.seq:
            apply(state, seq, loads(bytes(body)))


def _initial(row: Row) -> SessionState:
    """Where a session's fold starts: what a fork inherits, else its checkpoint or its
    snapshot."""
    _pk, _name, _created, snapshot, tail, checkpoint, checkpoint_seq, _head, parent, upto = row
    if _forked(row):
        return forks.inherited(parent, upto)
    if checkpoint is not None and checkpoint_seq >= tail:
        return SessionState.from_dict(checkpoint, checkpoint_seq)
    return SessionState.from_dict(snapshot, tail) if snapshot else SessionState(seq=tail)


def _orjson_line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)  # the same bytes as json.dumps(ensure_ascii=False), faster


def export(
    options: Options,
    write: Callable[[str, bytes], None],
    found: Callable[[SessionState, Filters], Conversation | None] = conversation,
) -> dict[str, Any]:
    """Export every matching session: ``write(split, line)`` for each conversation kept (the
    line as UTF-8 JSON, no newline); returns the dataset card."""
    exporter = Exporter(options.fractions, options.seed, redactor(options.redact), _orjson_line)
    for name, created, state in folds(options):
        kept = exporter.take(name, created.isoformat(), found(state, options.filters))
        if kept is not None:
            write(*kept)
    filters = options.filters
    return exporter.card(
        filters={
            "since": options.since.isoformat() if options.since else None,
            "until": options.until.isoformat() if options.until else None,
            "agent": filters.agent,
            "finished_only": filters.finished_only,
            "min_rating": filters.min_rating,
            "corrections": filters.corrections,
        },
        redaction=options.redact or getattr(settings, "SESSIONS_EXPORT_REDACT", None) or "default",
    )


def export_files(options: Options, out: Path | None, stdout: Writer) -> dict[str, Any]:
    """Write one JSONL file per split (``out`` ``data.jsonl`` -> ``data.train.jsonl``...), or,
    without ``out``, every line to ``stdout`` as ``{"split": ..., "messages": ...}``; the
    card is kept as an ``Export`` row (the admin's Exports page)."""
    started = time.monotonic()
    with ExitStack() as stack:
        if out is None:

            def write(split: str, line: bytes) -> None:
                stdout.write('{"split":' + json.dumps(split) + "," + line[1:].decode() + "\n")

        else:
            files = {
                split: stack.enter_context(
                    out.with_name(f"{out.stem}.{split}{out.suffix or '.jsonl'}").open("wb")
                )
                for split in SPLITS
            }

            def write(split: str, line: bytes) -> None:
                files[split].write(line + b"\n")

        card = export(options, write)
    if out is not None:
        card["files"] = {
            split: out.with_name(f"{out.stem}.{split}{out.suffix or '.jsonl'}").name
            for split in SPLITS
        }
    Export.objects.create(
        conversations=card["conversations"],
        took_seconds=time.monotonic() - started,
        out=str(out or "")[:1000],
        card=card,
    )
    return card


def card_text(card: dict[str, Any], markdown: bool) -> str:
    """The card as JSON, or as Markdown (a README for the dataset)."""
    if not markdown:
        return json.dumps(card, indent=2, ensure_ascii=False) + "\n"
    lines = [
        "# Dataset card",
        "",
        f"Conversations: {card['conversations']} ({card['messages']} messages), "
        f"exported from sessions_app; format: {card['format']}.",
        "",
        "| split | conversations |",
        "|---|---|",
        *(f"| {name} | {count} |" for name, count in card["splits"].items()),
        "",
        f"Date range: {card['date_range']['first']} to {card['date_range']['last']}.",
        f"Ratings: {card['ratings']}. Redactions ({card['redaction']}): {card['redactions']}.",
        f"Duplicates dropped: {card['duplicates_dropped']}; sessions left out by the filters: "
        f"{card['sessions_left_out']}. Split by conversation, seed {card['seed']}.",
        f"Filters: {card['filters']}.",
        "",
    ]
    return "\n".join(lines)
