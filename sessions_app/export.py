"""``python manage.py sessions export-dataset``: sessions as a fine-tuning dataset (JSONL).

Streams: sessions are read in chunks (``.iterator(chunk_size=...)``), each chunk's entries in
one ordered query, each session folded on its own and written out at once, so memory holds
one chunk, never the export. What a conversation is, the filters, the split and the card:
``sessions_app.domain.dataset``. The redaction hook is the operator's: a dotted path from the
``SESSIONS_EXPORT_REDACT`` setting or ``--redact`` (never a caller's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from django.conf import settings
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
from sessions_app.domain.fold import SessionState, apply
from sessions_app.log import loads
from sessions_app.models import JSON_CONTENT_TYPE, Entry, Export, Run, Session

CHUNK = 200  # sessions a query reads (their entries come in one more query)
ENTRY_BUDGET = 20_000  # entries a chunk reads in one round trip (its memory bound)


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


def redactor(path: str | None) -> Redactor:
    """The operator's redaction function (``text -> (text, {kind: count})``)."""
    path = path or getattr(settings, "SESSIONS_EXPORT_REDACT", None)
    if not path:
        return redact
    found = import_string(path)
    if not callable(found):
        raise TypeError(f"{path} is not a function")
    return found  # type: ignore[no-any-return]


def folds(options: Options) -> Iterator[tuple[str, datetime, SessionState]]:
    """Each session's name, creation time and fold, oldest first, a chunk at a time."""
    sessions = Session.objects.filter(content_type__istartswith=JSON_CONTENT_TYPE)
    if options.since:
        sessions = sessions.filter(created_at__gte=options.since)
    if options.until:
        sessions = sessions.filter(created_at__lt=options.until)
    if options.filters.agent is not None:
        sessions = sessions.filter(
            pk__in=Run.objects.filter(agent=options.filters.agent).values("session_id")
        )
    rows = sessions.order_by("created_at", "pk").values_list(
        "pk", "name", "created_at", "snapshot", "tail", "checkpoint", "checkpoint_seq", "head"
    )
    chunk: list[tuple[Any, ...]] = []
    entries = 0
    for row in rows.iterator(chunk_size=options.chunk):
        chunk.append(row)
        entries += row[-1] - _start(row)
        if len(chunk) >= options.chunk or entries >= ENTRY_BUDGET:
            yield from _fold_chunk(chunk, entries)
            chunk, entries = [], 0
    if chunk:
        yield from _fold_chunk(chunk, entries)


def _start(row: tuple[Any, ...]) -> int:
    """The offset a session's fold starts from: its checkpoint's, else its snapshot's."""
    _pk, _name, _created, _snapshot, tail, checkpoint, checkpoint_seq, _head = row
    return int(checkpoint_seq) if checkpoint is not None and checkpoint_seq >= tail else int(tail)


def _fold_chunk(
    rows: list[tuple[Any, ...]], entries: int
) -> Iterator[tuple[str, datetime, SessionState]]:
    states: dict[int, SessionState] = {}
    for row in rows:
        pk, _name, _created, snapshot, tail, checkpoint, checkpoint_seq, _head = row
        if checkpoint is not None and checkpoint_seq >= tail:
            states[pk] = SessionState.from_dict(checkpoint, checkpoint_seq)
        elif snapshot:
            states[pk] = SessionState.from_dict(snapshot, tail)
        else:
            states[pk] = SessionState(seq=tail)
    query = (
        Entry.objects.filter(session_id__in=list(states))
        .order_by("session_id", "seq")
        .values_list("session_id", "seq", "body")
    )
    # Within the budget, the chunk's entries come in one round trip; a longer session is
    # read through a server-side cursor, a few thousand rows at a time.
    found = query.iterator(chunk_size=2000) if entries > ENTRY_BUDGET else iter(query)
    state = None
    current = None
    for session_id, seq, body in found:
        if session_id != current:
            current, state = session_id, states[session_id]
        if seq > state.seq:  # type: ignore[union-attr]
            apply(state, seq, loads(bytes(body)))  # type: ignore[arg-type]
    for pk, name, created, *_ in rows:
        yield name, created, states.pop(pk)


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
