"""The wire format of Durable Streams: header values, offsets, JSON mode, SSE frames, cursors.

Pure functions (no Django, no database). Every parser raises ``BadRequest`` with a message
naming the header and the accepted form, so a client learns how to fix its request.
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sessions_app.domain.errors import BadOffset, BadRequest
from sessions_app.domain.offsets import format_offset, parse_offset
from sessions_app.domain.producers import MAX_NUMBER, ProducerClaim

OCTET_STREAM: Final = "application/octet-stream"
JSON: Final = "application/json"
BEGINNING: Final = "-1"
NOW: Final = "now"
# The reference server's pattern for ?offset=; anything else is refused before parsing.
OFFSET_PATTERN: Final = re.compile(r"(-1|now|\d+_\d+)\Z")
DECIMAL: Final = re.compile(r"(0|[1-9]\d*)\Z")
DIGITS: Final = re.compile(r"\d+\Z")
MEDIA_TYPE: Final = re.compile(r"[\w.+-]+/[\w.+-]+\Z", re.ASCII)
MAX_TTL: Final = 2**31 - 1  # the column is a 32-bit integer
# A year away from both ends of the calendar, so that no time zone (of a client, or of a
# database connection reading it back) can carry an expiry off it.
EXPIRES_AT_YEARS: Final = (2, 9998)
# Cursors count 20-second intervals since this instant, as the reference server does.
CURSOR_EPOCH: Final = datetime(2024, 10, 9, tzinfo=UTC).timestamp()
CURSOR_INTERVAL: Final = 20
MAX_CURSOR_JITTER: Final = 3600


# --- content types -----------------------------------------------------------------------


def media_type(content_type: str) -> str:
    """``type/subtype`` in lower case, parameters dropped: what two types are compared on."""
    return content_type.split(";", 1)[0].strip().lower()


def creation_type(raw: str | None) -> str:
    """The content type a new stream gets: as sent, or octet-stream when absent or malformed."""
    raw = (raw or "").strip()
    return raw if MEDIA_TYPE.match(media_type(raw)) else OCTET_STREAM


def is_json(content_type: str) -> bool:
    return media_type(content_type) == JSON


def is_text(content_type: str) -> bool:
    """Text and JSON streams go over SSE as they are; everything else as base64."""
    return media_type(content_type).startswith("text/") or is_json(content_type)


# --- offsets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Where a read starts: after ``seq``, or at the tail (``now``)."""

    seq: int = 0
    now: bool = False
    given: str | None = None  # the offset as the client sent it (None: omitted)


def parse_start(values: Sequence[str]) -> Start:
    """The ``offset`` query parameter (all its values): omitted, ``-1``, ``now`` or an offset."""
    if not values:
        return Start()
    if len(values) > 1:
        raise BadOffset("send the offset parameter once")
    raw = values[0]
    if not OFFSET_PATTERN.match(raw):
        raise BadOffset("offset must be -1, now, or an offset the server returned", offset=raw)
    if raw == NOW:
        return Start(now=True, given=raw)
    return Start(seq=parse_offset(raw), given=raw)


# --- creation headers ----------------------------------------------------------------------


def parse_ttl(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not DECIMAL.match(raw) or int(raw) > MAX_TTL:
        raise BadRequest(f"Stream-TTL must be whole seconds (0 to {MAX_TTL}) without sign or zeros")
    return int(raw)


def parse_expires_at(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise BadRequest("Stream-Expires-At must be an RFC 3339 time with a zone, e.g. ...Z")
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past the calendar's end in UTC
        value = None
    if value is None or not EXPIRES_AT_YEARS[0] <= value.year <= EXPIRES_AT_YEARS[1]:
        raise BadRequest(
            f"Stream-Expires-At must fall within the years {EXPIRES_AT_YEARS[0]} to "
            f"{EXPIRES_AT_YEARS[1]} (UTC)"
        )
    return value


def parse_fork_offset(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return parse_offset(raw)
    except BadOffset:
        raise BadOffset("Stream-Fork-Offset must be an offset the server returned") from None


def parse_sub_offset(raw: str | None) -> int:
    if raw is None:
        return 0
    if not DECIMAL.match(raw):
        raise BadRequest("Stream-Fork-Sub-Offset must be a whole number without sign or zeros")
    return int(raw)


def is_true(raw: str | None) -> bool:
    return raw is not None and raw.strip().lower() == "true"


# --- producers -----------------------------------------------------------------------------


def parse_producer(pid: str | None, epoch: str | None, seq: str | None) -> ProducerClaim | None:
    """The idempotent-producer headers: all three or none."""
    given = [value is not None for value in (pid, epoch, seq)]
    if not any(given):
        return None
    if not all(given):
        raise BadRequest("send Producer-Id, Producer-Epoch and Producer-Seq together, or none")
    assert pid is not None and epoch is not None and seq is not None
    if not 0 < len(pid) <= 128:
        raise BadRequest("Producer-Id must be 1 to 128 characters")
    return ProducerClaim(
        pid, _producer_number("Producer-Epoch", epoch), _producer_number("Producer-Seq", seq)
    )


def _producer_number(header: str, raw: str) -> int:
    if not DIGITS.match(raw) or int(raw) > MAX_NUMBER:
        raise BadRequest(f"{header} must be a whole number from 0 to {MAX_NUMBER}")
    return int(raw)


# --- JSON mode -----------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_items(body: bytes, *, allow_empty: bool) -> list[Any]:
    """The messages of a JSON body: a top-level array is flattened one level."""
    try:
        value = json.loads(body, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    items = value if isinstance(value, list) else [value]
    if not items and not allow_empty:
        raise BadRequest("an empty JSON array appends nothing; send at least one message")
    return items


def encode_json(item: Any) -> bytes:
    """A message as stored: compact JSON. ValueError for a number Python read as infinity
    (1e400): stored as ``Infinity``, it made every read of the stream invalid JSON."""
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def json_array(bodies: Sequence[bytes]) -> bytes:
    """Stored JSON messages as one array (they are stored as compact JSON already)."""
    return b"[" + b",".join(bodies) + b"]"


# --- cursors -------------------------------------------------------------------------------


def next_cursor(client: str | None, now: float) -> str:
    """The cursor of a live response: the current interval, or past the client's.

    A cursor the client echoes back must come back strictly greater, with jitter, so that
    CDN-collapsed requests do not loop on one cached response (PROTOCOL.md, cursors).
    """
    current = int((now - CURSOR_EPOCH) // CURSOR_INTERVAL)
    if client is not None and DIGITS.match(client) and int(client) >= current:
        jitter = random.randint(1, MAX_CURSOR_JITTER)  # noqa: S311 - not security sensitive
        return str(int(client) + max(1, math.ceil(jitter / CURSOR_INTERVAL)))
    return str(current)


# --- SSE -----------------------------------------------------------------------------------

LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


def sse_event(kind: str, payload: str) -> str:
    """One SSE event; every line of ``payload`` gets its own ``data:`` so none can inject."""
    lines = "".join(f"data:{line}\n" for line in LINE_BREAK.split(payload))
    return f"event: {kind}\n{lines}\n"


def sse_data(content_type: str, bodies: Sequence[bytes]) -> str:
    if is_json(content_type):
        return sse_event("data", json_array(bodies).decode())
    joined = b"".join(bodies)
    if is_text(content_type):
        return sse_event("data", joined.decode(errors="replace"))
    return sse_event("data", base64.b64encode(joined).decode())


def sse_control(fields: Mapping[str, Any]) -> str:
    return sse_event("control", json.dumps(fields, separators=(",", ":")))


def control_fields(seq: int, cursor: str, *, up_to_date: bool, closed: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"streamNextOffset": format_offset(seq)}
    if closed:
        fields["streamClosed"] = True
    else:
        fields["streamCursor"] = cursor
    if up_to_date:
        fields["upToDate"] = True
    return fields


# --- ETag ----------------------------------------------------------------------------------


def etag(name: str, start: str | None, end: int, *, closed_at_end: bool) -> str:
    """Changes when the range's end moves or the stream closes at it."""
    path = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    suffix = ":c" if closed_at_end else ""
    return f'"{path}:{start or BEGINNING}:{format_offset(end)}{suffix}"'
