"""One stream as the audit reads it, whatever the transport (SSE over HTTP, a WebSocket).

No Django. ``Reading`` fills while the stream is read (another task may watch it), then
freezes into the verdicts' ``Stream``; ``record`` counts one event into it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sessions_app.audit.readers import Held
from sessions_app.domain.audit import Stream

MAX_STREAM_BYTES = 8 << 20
MAX_EVENTS = 20_000
MAX_EVENT_BYTES = 1 << 20
MAX_SIZES = 5_000
EXCERPT = 300


class StreamTooLarge(Exception):
    """An answer went past the audit's bounds (bytes or events)."""


@dataclass
class Reading:
    """One stream as it is read (mutable), then frozen into a :class:`Stream`."""

    held: Held
    status: int | None = None
    content_type: str = ""
    error: str = ""
    events: int = 0
    ids: list[str] = field(default_factory=list)
    repeated: int = 0
    sizes: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    first_event: float | None = None
    first_text: float | None = None
    last_event: float | None = None
    max_gap: float = 0.0
    finished: float | None = None
    body_bytes: int = 0
    header_bytes: int = 0
    excerpt: bytes = b""
    cut: bool = False
    text_seen: asyncio.Event = field(default_factory=asyncio.Event)

    def frozen(self) -> Stream:
        at = self.started
        kind = self.content_type.split(";")[0].strip().lower()
        streaming = kind in ("text/event-stream", "websocket")
        return Stream(
            status=self.status,
            error=self.error,
            content_type=self.content_type[:100],
            streaming=streaming and self.events > 0,
            events=self.events,
            text=self.held.text,
            answers=self.held.answers,
            event_ids=bool(self.ids),
            first_id=self.ids[0] if self.ids else "",
            last_id=self.ids[-1] if self.ids else "",
            repeated_ids=self.repeated,
            ended=self.held.ended,
            outcome=self.held.outcome,
            progress=tuple(self.held.progress),
            first_event_s=None if self.first_event is None else self.first_event - at,
            first_text_s=None if self.first_text is None else self.first_text - at,
            duration_s=None if self.finished is None else self.finished - at,
            event_sizes=tuple(self.sizes),
            max_gap_s=self.max_gap if self.events > 1 else None,
            cut=self.cut,
            run_id=self.held.run_id[:200],
            message_id=self.held.message_id[:200],
        )


def record(
    reading: Reading, nbytes: int, ident: str | None, fold: Any, seen: frozenset[str]
) -> None:
    """Count one event of any transport into ``reading`` (timing, size, id), then ``fold()``
    it into what the client holds."""
    now = time.monotonic()
    if nbytes > MAX_EVENT_BYTES:
        raise StreamTooLarge(f"an event of more than {MAX_EVENT_BYTES} bytes")
    if reading.last_event is not None:
        reading.max_gap = max(reading.max_gap, now - reading.last_event)
    reading.last_event = now
    reading.first_event = reading.first_event or now
    reading.events += 1
    if len(reading.sizes) < MAX_SIZES:
        reading.sizes.append(nbytes)
    if ident is not None and (not reading.ids or reading.ids[-1] != ident):
        if ident[:200] in seen:  # the way back sent again what had arrived
            reading.repeated += 1
        reading.ids.append(ident[:200])
    before = reading.held.text_events
    fold()
    if reading.held.text_events > before and reading.first_text is None:
        reading.first_text = now
        reading.text_seen.set()
