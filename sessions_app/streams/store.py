"""The stream service: Durable Streams semantics over the session log's tables.

A stream is a ``Session`` row; its entries are ``Entry`` rows, one per JSON message or per
appended byte chunk. Appends take the row's lock and advance ``Session.head`` inside the
transaction that stores the entries (``log._advance_head``), exactly as the log's own group
commit does, so the WebSocket door and this one can write to the same session at once and
offsets stay gap-free and in commit order. After commit the log's ``log.entries``
notification goes to the session's group, so WebSocket subscribers see these appends too.

Protocol state the session columns have no place for (the last ``Stream-Seq``, the original
``Stream-Expires-At`` text, the fork request) lives under ``metadata["durable_streams"]``,
written under the same lock.

A fork shares its source's entries ``1..fork_seq``: reads walk up the ``forked_from`` chain.
A stream with forks is only soft-deleted; deleting the last fork removes soft-deleted (or
expired) ancestors that nothing references any more.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sessions_app import dbexec, log, metrics, services
from sessions_app.access import Actor, check_creatable_name, check_quota
from sessions_app.conf import setting
from sessions_app.domain import producers
from sessions_app.domain.errors import (
    BadRequest,
    Conflict,
    LimitExceeded,
    NotFound,
    OffsetExpired,
    SessionError,
    StreamClosed,
)
from sessions_app.domain.offsets import format_offset
from sessions_app.models import Entry, Membership, Producer, Session
from sessions_app.runs import RunTracker
from sessions_app.streams import protocol
from sessions_app.streams.errors import ContentTypeMismatch, Forbidden, Gone, Unauthorized

logger = logging.getLogger(__name__)

STATE_KEY = "durable_streams"
READ_PAGE = 5000
# A catch-up response stops after the page that crosses this size; the client reads on.
MAX_READ_BYTES = 8 * 1024 * 1024
FIELDS = (
    "pk",
    "name",
    "owner_id",
    "content_type",
    "head",
    "tail",
    "closed",
    "deleted",
    "ttl_seconds",
    "expires_at",
    "forked_from_id",
    "fork_seq",
    "metadata",
)


def change_group(session_pk: int) -> str:
    """The group told when a stream closes or is deleted (entries go to ``log.group_name``).

    Kept apart from the log's group because WebSocket consumers there handle only the
    message types they know.
    """
    return f"sessions_app.ds{session_pk}"


@dataclass(frozen=True)
class Stream:
    """A stream as one read saw it."""

    pk: int
    name: str
    owner_id: int | None
    content_type: str
    head: int
    tail: int
    closed: bool
    deleted: bool
    ttl_seconds: int | None
    expires_at: datetime | None
    forked_from_id: int | None
    fork_seq: int
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Stream:
        metadata = row.pop("metadata") or {}
        return cls(**row, state=dict(metadata.get(STATE_KEY) or {}))

    @property
    def json(self) -> bool:
        return protocol.is_json(self.content_type)

    @property
    def expires_raw(self) -> str | None:
        """The ``Stream-Expires-At`` the stream was created with (None with a TTL)."""
        return self.state.get("expires_at")

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def config(self) -> tuple[Any, ...]:
        fork = self.state.get("fork") or {}
        own = not self.state.get("inherited")  # an inherited expiry was not asked for
        return (
            protocol.media_type(self.content_type),
            self.ttl_seconds if own and "ttl" in self.state else None,
            self.expires_raw if own else None,
            self.closed,
            fork.get("from"),
            fork.get("sub", 0),
        )


def load(name: str) -> Stream | None:
    """The stream named ``name``, in one plain statement: every request starts with this, and
    building it through the ORM took three times as long as the query itself."""
    with connection.cursor() as cursor:
        cursor.execute(load_sql(), [name])
        row = cursor.fetchone()
    return None if row is None else stream_from_row(row)


@functools.cache
def load_sql() -> str:
    """``SELECT`` of a stream's ``FIELDS`` by name (one ``%s`` parameter)."""
    columns = ", ".join(connection.ops.quote_name("id" if f == "pk" else f) for f in FIELDS)
    table = connection.ops.quote_name(Session._meta.db_table)
    return f"SELECT {columns} FROM {table} WHERE name = %s"


def stream_from_row(row: Sequence[Any]) -> Stream:
    """A ``load_sql`` row as a Stream."""
    values = dict(zip(FIELDS, row, strict=True))
    # What the ORM's converters would do on every backend: booleans, aware datetimes, JSON.
    values["closed"], values["deleted"] = bool(values["closed"]), bool(values["deleted"])
    values["expires_at"] = _aware(values["expires_at"])
    if isinstance(values["metadata"], str):
        values["metadata"] = json.loads(values["metadata"])
    return Stream.from_row(values)


def _aware(value: datetime | str | None) -> datetime | None:
    """A datetime column's value as the ORM gives it: aware (UTC) with ``USE_TZ``."""
    if isinstance(value, str):  # SQLite keeps datetimes as text (in UTC with USE_TZ)
        value = parse_datetime(value)
    if value is not None and settings.USE_TZ and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


def has_forks(pk: int) -> bool:
    return Session.objects.filter(forked_from_id=pk).exists()


class Status(enum.Enum):
    LIVE = "live"
    GONE = "gone"  # soft-deleted (or expired) but kept for its forks: 410
    ABSENT = "absent"  # never existed, deleted, or expired without forks: 404


def status(stream: Stream | None, now: datetime) -> Status:
    if stream is None:
        return Status.ABSENT
    if stream.deleted:
        return Status.GONE
    if stream.expired(now):
        return Status.GONE if has_forks(stream.pk) else Status.ABSENT
    return Status.LIVE


# --- who may use which stream ----------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """The actor of a request and the site's anonymous prefix (None: no anonymous streams)."""

    actor: Actor
    prefix: str | None

    def anonymous_name(self, name: str) -> bool:
        return self.prefix is not None and name.startswith(self.prefix)

    def allows(self, stream: Stream) -> bool:
        """Anonymous streams under the prefix are public; owned ones need owner or member."""
        decided = self.decides(stream)
        if decided is not None:
            return decided
        actor = self.actor
        return Membership.objects.filter(session_id=stream.pk, user_id=actor.user.pk).exists()

    def decides(self, stream: Stream) -> bool | None:
        """``allows`` when it needs no query; None when only a membership can tell."""
        if stream.owner_id is None:
            return self.anonymous_name(stream.name)
        actor = self.actor
        if not actor.authenticated:
            return False
        if actor.sessions is not None and stream.name not in actor.sessions:
            return False
        if stream.owner_id == actor.user.pk:
            return True
        return None

    def owner_for_new(self, name: str) -> int | None:
        """Who owns a stream created under ``name``; raises when nobody may create it."""
        if self.anonymous_name(name):
            return None
        actor = self.actor
        if not actor.authenticated:
            raise Unauthorized("log in (session cookie or token) to create a stream here")
        if actor.sessions is not None and name not in actor.sessions:
            raise NotFound("this token does not open that stream")
        return int(actor.user.pk)


def open_stream(access: Access, name: str, now: datetime | None = None) -> Stream:
    """The live stream ``name`` if ``access`` allows it; NotFound or Gone otherwise."""
    stream = load(name)
    if stream is None or not access.allows(stream):
        raise NotFound("no such stream")
    found = status(stream, now or timezone.now())
    if found is Status.GONE:
        raise Gone("the stream was deleted")
    if found is Status.ABSENT:
        raise NotFound("no such stream")
    return stream


def touch(stream: Stream, now: datetime | None = None) -> None:
    """Push a sliding TTL's expiry ahead (every read and append does; HEAD does not)."""
    if "ttl" in stream.state and stream.ttl_seconds is not None:
        expires = (now or timezone.now()) + timedelta(seconds=stream.ttl_seconds)
        Session.objects.filter(pk=stream.pk).update(expires_at=expires)


# --- turning bodies into entries -------------------------------------------------------------


def items_for(stream_json: bool, session: bool, body: bytes, *, creating: bool) -> list[log.Item]:
    """The entries a body appends: one per JSON message, or one byte chunk.

    A session (an owned JSON stream) takes only valid events, stored with the server time as
    every door stores them; anonymous JSON streams take any JSON.
    """
    if not stream_json:
        return [log.Item(body)] if body else []
    if not body and creating:
        return []
    try:
        messages = protocol.json_items(body, allow_empty=creating)
        if not session:
            return [log.Item(protocol.encode_json(message)) for message in messages]
        return _events(messages)
    except SessionError:
        raise
    except (ValueError, RecursionError) as exc:
        # JSON that parses but cannot be stored: a lone surrogate (\ud83d) does not encode
        # as UTF-8; nesting deeper than the parser's recursion limit. Refused like bad JSON,
        # and never an error of the whole group commit this append shares.
        raise BadRequest(f"the body is not storable JSON: {exc}") from None


def _events(messages: list[Any]) -> list[log.Item]:
    # The same validation, encoding and run bookkeeping as every other door.
    return services.build_items(messages) if messages else []


def _insert(pk: int, first: int, items: Sequence[log.Item], now: datetime) -> None:
    rows = [
        (pk, seq, item.type, item.run, _bytes(item.body), now)
        for seq, item in enumerate(items, start=first)
    ]
    if len(rows) == 1:  # the common append: one statement, no model instances
        table = connection.ops.quote_name(Entry._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(log.COPY_COLUMNS)}) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                rows[0],
            )
        return
    columns = log.COPY_COLUMNS
    log._insert_entries([Entry(**dict(zip(columns, row, strict=True))) for row in rows])


def _bytes(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else body


# --- create and fork -------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateRequest:
    name: str
    content_type: str | None  # None: not sent (a fork inherits its source's)
    ttl: int | None = None
    expires_at: datetime | None = None
    expires_raw: str | None = None
    closed: bool = False
    fork_from: str | None = None  # the source's name
    fork_offset: int | None = None
    sub_offset: int = 0
    body: bytes = b""


@dataclass(frozen=True)
class ForkPlan:
    source: Stream
    fork_seq: int
    prefix: bytes | None  # a byte fork inside an append starts with that append's first bytes
    state: dict[str, Any]


def create(access: Access, request: CreateRequest) -> tuple[Stream, bool]:
    """Create the stream, or find the same one; return it and whether it was created."""
    try:
        return _create_once(access, request)
    except IntegrityError:  # another request created the name first: judge against it
        return _create_once(access, request)


def _create_once(access: Access, request: CreateRequest) -> tuple[Stream, bool]:
    now = timezone.now()
    with transaction.atomic():
        existing = load(request.name)
        found = Status.ABSENT if existing is None else status(existing, now)
        if existing is not None and found is not Status.ABSENT:
            if not access.allows(existing):
                # Answered as a free name would be to this caller, then as a reserved one: a
                # name someone else uses tells no more than that it cannot be had.
                access.owner_for_new(request.name)
                raise Conflict("a session with this name exists", name=request.name)
            if found is Status.GONE:
                raise Conflict("the stream was deleted; its name stays taken while forks use it")
            return _same_or_conflict(access, existing, request), False
        if existing is not None:
            _remove(existing.pk)  # expired: the name is free again
        owner = access.owner_for_new(request.name)
        check_creatable_name(request.name)
        if owner is None:
            _check_anonymous_create(request, now)
        else:  # a token may name the stream it creates, so only the quota applies here
            check_quota(access.actor.user)
        fork = _plan_fork(access, request, now) if request.fork_from else None
        return _insert_stream(request, owner, fork, now), True


def _check_anonymous_create(request: CreateRequest, now: datetime) -> None:
    """Anonymous streams are anyone's to create: they get a ceiling on count and lifetime."""
    longest = setting("ANONYMOUS_MAX_TTL")
    if request.ttl is not None and request.ttl > longest:
        raise BadRequest(f"Stream-TTL may be at most {longest} seconds for anonymous streams")
    if request.expires_at is not None and request.expires_at > now + timedelta(seconds=longest):
        raise BadRequest(
            f"Stream-Expires-At may be at most {longest} seconds ahead for anonymous streams"
        )
    most = setting("ANONYMOUS_MAX_STREAMS")
    live = Session.objects.filter(owner_id__isnull=True).exclude(expires_at__lte=now)
    if live.count() >= most:
        raise LimitExceeded(
            f"this site holds {most} anonymous streams, its most; try again when some expire",
            limit="anonymous_streams",
        )


def _check_stream_bytes(size: int) -> None:
    most = setting("ANONYMOUS_MAX_STREAM_BYTES")
    if size > most:
        raise LimitExceeded(f"an anonymous stream holds at most {most} bytes", limit="stream_bytes")


def _requested_config(access: Access, request: CreateRequest) -> tuple[Any, ...]:
    content_type = request.content_type
    if content_type is None:
        source = load(request.fork_from) if request.fork_from else None
        content_type = source.content_type if source is not None else protocol.OCTET_STREAM
    return (
        protocol.media_type(content_type),
        request.ttl,
        request.expires_raw,
        request.closed,
        request.fork_from,
        request.sub_offset,
    )


def _same_or_conflict(access: Access, existing: Stream, request: CreateRequest) -> Stream:
    wanted = _requested_config(access, request)
    have = existing.config()
    fork = existing.state.get("fork") or {}
    same_offset = request.fork_offset is None or request.fork_offset == fork.get("offset")
    if wanted != have or not same_offset:
        raise Conflict("a stream with this name exists with a different configuration")
    return existing


def _plan_fork(access: Access, request: CreateRequest, now: datetime) -> ForkPlan:
    assert request.fork_from is not None
    source = load(request.fork_from)
    if source is None or not access.allows(source):
        raise NotFound("the fork source does not exist")
    found = status(source, now)
    if found is Status.ABSENT:
        raise NotFound("the fork source does not exist")
    if found is Status.GONE:
        raise Conflict("the fork source was deleted")
    if request.content_type is not None and protocol.media_type(
        request.content_type
    ) != protocol.media_type(source.content_type):
        raise Conflict(f"a fork has its source's content type, {source.content_type}")
    anchor = source.head if request.fork_offset is None else request.fork_offset
    if anchor > source.head:
        raise BadRequest(
            f"Stream-Fork-Offset is beyond the source's tail {format_offset(source.head)}"
        )
    if anchor < source.tail:
        raise OffsetExpired("the fork offset was removed by retention")
    fork_seq, prefix = _sub_offset(source, anchor, request.sub_offset)
    state = {"fork": {"from": source.name, "offset": anchor, "sub": request.sub_offset}}
    return ForkPlan(source, fork_seq, prefix, state)


def _sub_offset(source: Stream, anchor: int, sub: int) -> tuple[int, bytes | None]:
    """Where a fork's inherited range ends, counting ``sub`` into the append after ``anchor``.

    JSON messages are entries of their own, so a JSON sub-offset moves the end by whole
    entries. A byte chunk is one entry: a fork inside it gets the chunk's first ``sub`` bytes
    as its own first entry.
    """
    if sub == 0:
        return anchor, None
    if source.json:
        if anchor + sub > source.head:
            raise BadRequest("Stream-Fork-Sub-Offset is past the messages after the fork offset")
        return anchor + sub, None
    rows = read(source, anchor, 1)
    if not rows or len(rows[0][1]) < sub:
        raise BadRequest("Stream-Fork-Sub-Offset is past the end of the append it points into")
    body = rows[0][1]
    return (anchor + 1, None) if len(body) == sub else (anchor, body[:sub])


def _insert_stream(
    request: CreateRequest, owner: int | None, fork: ForkPlan | None, now: datetime
) -> Stream:
    content_type = request.content_type or (
        fork.source.content_type if fork else protocol.OCTET_STREAM
    )
    ttl, expires_at, state = _expiry(request, fork, now)
    if fork is not None:
        state.update(fork.state)
    session_events = owner is not None and protocol.is_json(content_type)
    items = ([log.Item(fork.prefix)] if fork and fork.prefix else []) + items_for(
        protocol.is_json(content_type), session_events, request.body, creating=True
    )
    base = fork.fork_seq if fork else 0
    size = sum(item.size for item in items)
    if owner is None:
        _check_stream_bytes(size)
        if expires_at is None:  # anonymous streams always expire (not echoed to clients)
            expires_at = now + timedelta(seconds=setting("ANONYMOUS_MAX_TTL"))
    session = Session.objects.create(
        name=request.name,
        owner_id=owner,
        content_type=content_type,
        head=base + len(items),
        size_bytes=size,
        closed=request.closed,
        ttl_seconds=ttl,
        expires_at=expires_at,
        forked_from_id=fork.source.pk if fork else None,
        fork_seq=base,
        metadata={STATE_KEY: state},
    )
    _insert(session.pk, base + 1, items, now)
    stream = load(request.name)
    assert stream is not None and stream.pk == session.pk
    return stream


def _expiry(
    request: CreateRequest, fork: ForkPlan | None, now: datetime
) -> tuple[int | None, datetime | None, dict[str, Any]]:
    """(ttl, expires_at, state): the request's, else a fork inherits its source's."""
    if request.ttl is not None:
        return request.ttl, now + timedelta(seconds=request.ttl), {"ttl": True}
    if request.expires_at is not None:
        return None, request.expires_at, {"expires_at": request.expires_raw}
    if fork is not None and "ttl" in fork.source.state and fork.source.ttl_seconds is not None:
        ttl = fork.source.ttl_seconds
        return ttl, now + timedelta(seconds=ttl), {"ttl": True, "inherited": True}
    if fork is not None and fork.source.expires_raw is not None:
        raw = fork.source.expires_raw
        return None, fork.source.expires_at, {"expires_at": raw, "inherited": True}
    return None, None, {}


# --- delete ----------------------------------------------------------------------------------


def delete(access: Access, name: str) -> int:
    """Delete the stream (soft-delete while forks read it); return its primary key."""
    with transaction.atomic():
        stream = open_stream(access, name)
        if stream.owner_id is not None and stream.owner_id != access.actor.user.pk:
            raise Forbidden("only the session's owner may delete it; members may read and write")
        if has_forks(stream.pk):
            Session.objects.filter(pk=stream.pk).update(deleted=True)
        else:
            _remove(stream.pk)
    return stream.pk


def _remove(pk: int) -> None:
    """Remove a stream, then every ancestor that was only kept for it."""
    parent_id = Session.objects.filter(pk=pk).values_list("forked_from_id", flat=True).first()
    Session.objects.filter(pk=pk).delete()
    if parent_id is None:
        return
    parent = Session.objects.filter(pk=parent_id).values(*FIELDS).first()
    if parent is None or has_forks(parent_id):
        return
    stream = Stream.from_row(parent)
    if stream.deleted or stream.expired(timezone.now()):
        _remove(parent_id)


# --- reads -----------------------------------------------------------------------------------


def segments(stream: Stream) -> list[tuple[int, int, int | None]]:
    """Where a stream's entries live: (session pk, above seq, up to seq), oldest first."""
    found: list[tuple[int, int, int | None]] = [(stream.pk, stream.fork_seq, None)]
    parent_id, upper = stream.forked_from_id, stream.fork_seq
    while parent_id is not None and upper > 0:
        row = Session.objects.filter(pk=parent_id).values_list("forked_from_id", "fork_seq").first()
        if row is None:
            break
        found.append((parent_id, row[1], upper))
        parent_id, upper = row[0], min(upper, row[1])
    return found[::-1]


def read(stream: Stream, after: int, limit: int) -> list[tuple[int, bytes]]:
    """Entries above ``after`` (own and inherited), in order, at most ``limit``."""
    rows: list[tuple[int, bytes]] = []
    for pk, low, high in segments(stream):
        if len(rows) >= limit or (high is not None and high <= after):
            continue
        rows.extend(_entries(pk, max(after, low), high, limit - len(rows)))
    return rows


def _entries(pk: int, after: int, upto: int | None, limit: int) -> list[tuple[int, bytes]]:
    # Plain SQL: catch-up reads move thousands of rows, and the ORM's per-row work showed up
    # as a third of a 10,000-entry read (bench/durable_streams.py).
    table = connection.ops.quote_name(Entry._meta.db_table)
    bound = " AND seq <= %s" if upto is not None else ""
    params = [pk, after, *([upto] if upto is not None else []), limit]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT seq, body FROM {table} WHERE session_id = %s AND seq > %s{bound} "
            "ORDER BY seq LIMIT %s",
            params,
        )
        return [(seq, bytes(body)) for seq, body in cursor.fetchall()]


def read_batch(stream: Stream, after: int) -> list[tuple[int, bytes]]:
    """What one response carries: everything above ``after``, up to about MAX_READ_BYTES."""
    rows: list[tuple[int, bytes]] = []
    size = 0
    while size < MAX_READ_BYTES:
        page = read(stream, after, READ_PAGE)
        rows.extend(page)
        size += sum(len(body) for _, body in page)
        if len(page) < READ_PAGE:
            break
        after = page[-1][0]
    return rows


def refresh(stream: Stream) -> Stream:
    """The same stream re-read (its head, closed flag, deletion)."""
    row = Session.objects.filter(pk=stream.pk).values(*FIELDS).first()
    if row is None:
        raise NotFound("the stream was deleted")
    fresh = Stream.from_row(row)
    if fresh.deleted:
        raise Gone("the stream was deleted")
    return fresh


# --- appends ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppendRequest:
    pk: int
    items: Sequence[log.Item]
    producer: producers.ProducerClaim | None = None
    seq: str | None = None  # Stream-Seq
    close: bool = False
    has_body: bool = False  # a body was sent (a closed stream refuses it unparsed)
    ttl: int | None = None  # the stream's sliding TTL, pushed ahead by the append
    max_bytes: int | None = None  # what the stream may hold at most (anonymous streams)

    @property
    def plain(self) -> bool:
        """Only entries: no producer, Stream-Seq or close to judge under the lock first."""
        tracked = any(item.run or item.type == "CANCEL" for item in self.items)
        return (
            bool(self.items)
            and self.producer is None
            and self.seq is None
            and not self.close
            and not tracked
        )


@dataclass(frozen=True)
class Post:
    """An append by stream name, as a request gives it.

    The stream is looked up, its access and content type checked and the body parsed in the
    writer thread, just before the commit: one thread hop per append instead of a read then a
    write. A batch looks all its appends up before its first write, so no row lock it takes
    is held during a lookup.
    """

    access: Access
    name: str
    body: bytes
    media_type: str  # the request's Content-Type, without parameters ("" when absent)
    producer: producers.ProducerClaim | None = None
    seq: str | None = None
    close: bool = False

    def resolve(self) -> AppendRequest:
        return self.resolve_in(open_stream(self.access, self.name))

    def resolve_in(self, stream: Stream) -> AppendRequest:
        """This append to ``stream``, which ``open_stream`` gave for this request."""
        items: list[log.Item] = []
        if self.body and not stream.closed:  # a closed stream answers 409 before any body check
            if self.media_type != protocol.media_type(stream.content_type):
                raise ContentTypeMismatch(
                    f"the stream's content type is {stream.content_type}; send that"
                )
            session = stream.owner_id is not None and stream.json
            items = items_for(stream.json, session, self.body, creating=False)
        return AppendRequest(
            stream.pk,
            items,
            self.producer,
            self.seq,
            self.close,
            has_body=bool(self.body),
            ttl=stream.ttl_seconds if "ttl" in stream.state else None,
            max_bytes=setting("ANONYMOUS_MAX_STREAM_BYTES") if stream.owner_id is None else None,
        )

    @property
    def plain(self) -> bool:
        """Nothing but a body: whatever it appends has no producer, Stream-Seq or close."""
        return bool(self.body) and self.producer is None and self.seq is None and not self.close


@dataclass(frozen=True)
class Appended:
    head: int  # Stream-Next-Offset after the request
    closed: bool
    first: int = 0  # the entries this request wrote: first..head (none when first > head)
    duplicate: bool = False
    producer_epoch: int | None = None
    producer_seq: int | None = None


def _lock(pk: int) -> dict[str, Any]:
    row = (
        Session.objects.select_for_update()
        .filter(pk=pk)
        .values("head", "size_bytes", "closed", "deleted", "ttl_seconds", "expires_at", "metadata")
        .first()
    )
    if row is None:
        raise NotFound("no such stream")
    if row["deleted"]:
        raise Gone("the stream was deleted")
    if row["expires_at"] is not None and row["expires_at"] <= timezone.now():
        raise NotFound("no such stream (it expired)")
    return dict(row)


def _producer_row(pk: int, claim: producers.ProducerClaim) -> Producer | None:
    return Producer.objects.filter(session_id=pk, producer_id=claim.id).first()


def _judge(row: Producer | None, claim: producers.ProducerClaim) -> producers.Verdict:
    if row is not None and claim.epoch > row.epoch and claim.seq != 0:
        raise BadRequest(f"a new producer epoch must start at Producer-Seq 0, not {claim.seq}")
    state = None if row is None else producers.ProducerState(row.epoch, row.last_seq)
    return producers.judge(state, claim)


def _duplicate(head: int, closed: bool, row: Producer) -> Appended:
    return Appended(
        head, closed, duplicate=True, producer_epoch=row.epoch, producer_seq=row.last_seq
    )


def apply(request: AppendRequest) -> Appended:
    """Judge and write one append; the caller holds the transaction."""
    if request.plain:
        done = _plain_append(request)
        if done is not None:
            return done
    locked = _lock(request.pk)
    head, claim = int(locked["head"]), request.producer
    row = _producer_row(request.pk, claim) if claim else None
    if locked["closed"]:
        return _on_closed(request, head, row)
    if claim is not None and _judge(row, claim) is producers.Verdict.DUPLICATE:
        assert row is not None
        return _duplicate(head, False, row)
    metadata = dict(locked["metadata"] or {})
    state = dict(metadata.get(STATE_KEY) or {})
    if request.seq is not None:
        if state.get("seq") is not None and request.seq <= state["seq"]:
            raise Conflict(
                f"Stream-Seq {request.seq!r} is not above the last one, {state['seq']!r}"
            )
        state["seq"] = request.seq
    first = head + 1
    if request.items and request.max_bytes is not None:
        _check_stream_bytes(int(locked["size_bytes"]) + sum(i.size for i in request.items))
    if request.items:
        # Runs follow the log here as on every door: refused appends (to a run that ended)
        # are refused before anything is written.
        tracker, as_log = RunTracker(), log.AppendRequest(request.pk, request.items)
        run_changes = tracker.plan(as_log)
        head = log._advance_head(request.pk, len(request.items), sum(i.size for i in request.items))
        now = timezone.now()
        _insert(request.pk, first, request.items, now)
        tracker.apply(as_log, run_changes, first, now)
    if claim is not None:
        _save_producer(request.pk, row, claim, first, len(request.items))
    metadata[STATE_KEY] = state
    changes: dict[str, Any] = {"metadata": metadata, "closed": request.close}
    changes.update(_touched(locked["ttl_seconds"], state))
    Session.objects.filter(pk=request.pk).update(**changes)
    epoch, seq = (claim.epoch, claim.seq) if claim else (None, None)
    return Appended(head, request.close, first, producer_epoch=epoch, producer_seq=seq)


def _touched(ttl: int | None, state: dict[str, Any]) -> dict[str, Any]:
    if ttl is None or "ttl" not in state:
        return {}
    return {"expires_at": timezone.now() + timedelta(seconds=ttl)}


def _plain_append(request: AppendRequest) -> Appended | None:
    """An append with nothing to judge, in one statement plus the insert.

    Offsets are still allocated under the row's lock (the UPDATE takes it). None when the
    stream is closed, deleted or expired: the full path then says which.
    """
    now = timezone.now()
    sql, params = _head_update(request, now)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    head = int(row[0])
    first = head - len(request.items) + 1
    _insert(request.pk, first, request.items, now)
    return Appended(head, False, first)


def _head_update(request: AppendRequest, now: datetime) -> tuple[str, list[Any]]:
    """``UPDATE ... RETURNING head`` advancing a live stream's head past ``request``'s items.

    It updates nothing when the stream is closed, deleted, expired or would grow past
    ``max_bytes``: the full path then says which.
    """
    size = sum(i.size for i in request.items)
    params: list[Any] = [len(request.items), size, now]
    if request.ttl is not None:
        params.append(now + timedelta(seconds=request.ttl))
    params += [request.pk, now]
    if request.max_bytes is not None:
        params += [size, request.max_bytes]
    return _head_update_sql(request.ttl is not None, request.max_bytes is not None), params


@functools.cache
def _head_update_sql(touch: bool, limited: bool) -> str:
    table = connection.ops.quote_name(Session._meta.db_table)
    expires = ", expires_at = %s" if touch else ""
    limit = " AND size_bytes + %s <= %s" if limited else ""
    return (
        f"UPDATE {table} SET head = head + %s, size_bytes = size_bytes + %s, "
        f"last_activity = %s{expires} WHERE id = %s AND NOT closed AND NOT deleted "
        f"AND (expires_at IS NULL OR expires_at > %s){limit} RETURNING head"
    )


def _append_statement(request: AppendRequest) -> Appended | None:
    """A plain append as one PostgreSQL statement, committed on its own (autocommit).

    The head update and the insert of the entries in one round trip, with no BEGIN and no
    separate COMMIT: a lone sequential writer pays for one statement instead of five. None
    when the stream is closed, deleted or expired (nothing was written).
    """
    sql, params = append_statement(request, timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return appended_by_statement(request, [row[0] for row in cursor.fetchall()])


def append_statement(request: AppendRequest, now: datetime) -> tuple[str, list[Any]]:
    """The one PostgreSQL statement of a plain append: ``RETURNING`` the entries' offsets."""
    _, params = _head_update(request, now)
    items = request.items
    sql = _append_sql(request.ttl is not None, request.max_bytes is not None, len(items) == 1)
    if len(items) == 1:  # the common append: plain values, which cost less to send than arrays
        item = items[0]
        return sql, [*params, request.pk, item.type, item.run, _bytes(item.body), now]
    types, runs, bodies = (
        [i.type for i in items],
        [i.run for i in items],
        [_bytes(i.body) for i in items],
    )
    return sql, [*params, request.pk, len(items), now, types, runs, bodies]


@functools.cache
def _append_sql(touch: bool, limited: bool, single: bool) -> str:
    update = _head_update_sql(touch, limited)
    insert = f"INSERT INTO {connection.ops.quote_name(Entry._meta.db_table)}"
    columns = ", ".join(log.COPY_COLUMNS)
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


def appended_by_statement(request: AppendRequest, seqs: list[int]) -> Appended | None:
    """What ``append_statement`` did: None when it wrote nothing (closed, deleted, expired)."""
    if not seqs:
        return None
    head = max(seqs)
    return Appended(head, False, head - len(request.items) + 1)


def _on_closed(request: AppendRequest, head: int, row: Producer | None) -> Appended:
    """A closed stream takes nothing; retries of what landed, and repeated closes, are fine."""
    claim = request.producer
    if claim is not None and row is not None:
        try:
            if _judge(row, claim) is producers.Verdict.DUPLICATE:
                return _duplicate(head, True, row)
        except SessionError:
            pass  # a stale or gapped producer on a closed stream: the closure is the answer
    if claim is None and request.close and not request.has_body:
        return Appended(head, True, head + 1)
    raise StreamClosed("the stream is closed; nothing more can be appended", head=head)


def _save_producer(
    pk: int, row: Producer | None, claim: producers.ProducerClaim, first: int, count: int
) -> None:
    row = row or Producer(session_id=pk, producer_id=claim.id)
    row.epoch, row.last_seq, row.last_first, row.last_count = claim.epoch, claim.seq, first, count
    row.save()


def commit(
    requests: Sequence[AppendRequest | Post],
) -> tuple[list[AppendRequest | None], list[Appended | SessionError]]:
    """Write ``requests`` in one transaction; each gets its result or its error.

    Every check of a request comes before its first write, so a refused request writes
    nothing and the others still land. Also returns each request as resolved (None for a
    ``Post`` refused before it named a stream).
    """
    if len(requests) == 1 and connection.vendor == "postgresql" and not connection.in_atomic_block:
        # A request alone (a sequential writer): looked up, then, when there is nothing to
        # judge under the lock, written by one statement.
        try:
            alone = _resolved(requests[0])
        except SessionError as exc:
            return [None], [exc]
        if alone.plain:
            done = _append_statement(alone)
            if done is not None:
                return [alone], [done]
        requests = [alone]
    # Every lookup before the first write: no row lock of the batch is held while the others
    # are looked up.
    looked_up: list[AppendRequest | SessionError] = []
    for request in requests:
        try:
            looked_up.append(_resolved(request))
        except SessionError as exc:
            looked_up.append(exc)
    resolved: list[AppendRequest | None] = []
    results: list[Appended | SessionError] = []
    with transaction.atomic():
        for found in looked_up:
            if isinstance(found, SessionError):
                results.append(found)
                resolved.append(None)
                continue
            try:
                results.append(apply(found))
            except SessionError as exc:
                results.append(exc)
            resolved.append(found)
    return resolved, results


def _resolved(request: AppendRequest | Post) -> AppendRequest:
    return request if isinstance(request, AppendRequest) else request.resolve()


def _commit_isolated(
    requests: Sequence[AppendRequest | Post],
) -> tuple[list[AppendRequest | None], list[Appended | SessionError]]:
    try:
        return commit(requests)
    except IntegrityError:
        if len(requests) == 1:
            raise
    resolved: list[AppendRequest | None] = []
    results: list[Appended | SessionError] = []
    for request in requests:
        try:
            one, result = commit([request])
            resolved.extend(one)
            results.extend(result)
        except IntegrityError as exc:
            resolved.append(None)
            results.append(SessionError(f"append refused by the database: {exc}"))
    return resolved, results


def _notes(
    requests: Sequence[AppendRequest | None], results: Sequence[Appended | SessionError]
) -> tuple[list[log.Notification], set[int]]:
    """The log's notifications for what was written, and the streams that closed."""
    notes: dict[int, log.Notification] = {}
    closed: set[int] = set()
    for request, result in zip(requests, results, strict=True):
        if request is None or not isinstance(result, Appended) or result.duplicate:
            continue
        if request.close:
            closed.add(request.pk)
        if not request.items:
            continue
        note = notes.get(request.pk)
        if note is None:
            note = notes[request.pk] = log.Notification(request.pk, result.first, result.head)
        note.last = result.head
        note.bodies.extend(item.body for item in request.items)
    return list(notes.values()), closed


async def announce_change(pks: set[int] | list[int]) -> None:
    """Wake live readers of streams that closed or were deleted."""
    layer = get_channel_layer()
    if layer is None:
        return
    for pk in pks:
        try:
            await layer.group_send(change_group(pk), {"type": "stream.changed", "session": pk})
        except Exception:  # a lost hint: readers re-check the database on their timeout
            logger.warning("could not announce a change of stream %s", pk, exc_info=True)


class Committer:
    """Group commit for one event loop: appends queued during a commit share the next one.

    Unlike the log's committer it does not wait a window first: a lone sequential writer
    should not pay for batching it cannot use.
    """

    MAX_BATCH = 500

    def __init__(self) -> None:
        self._queue: list[tuple[AppendRequest | Post, asyncio.Future[Appended | SessionError]]] = []
        self._task: asyncio.Task[None] | None = None
        self._loop_db: Any = None  # loopdb.LoopConnection, when the site may use one

    async def submit(self, request: AppendRequest | Post) -> Appended:
        future: asyncio.Future[Appended | SessionError] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        result = await future
        if isinstance(result, SessionError):
            raise result
        return result

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.MAX_BATCH], self._queue[self.MAX_BATCH :]
            requests = [request for request, _ in batch]
            resolved: list[AppendRequest | None] = [None] * len(batch)
            started = time.monotonic()
            try:
                done = await self._on_loop(requests[0]) if len(requests) == 1 else None
                if done is not None:
                    resolved, results = [done[0]], [done[1]]
                else:
                    resolved, results = await dbexec.run_write(_commit_isolated, requests)
            except Exception as exc:  # the whole batch failed: every caller hears why
                logger.exception("stream group commit failed")
                error = (
                    exc if isinstance(exc, SessionError) else SessionError(f"append failed: {exc}")
                )
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            _observe(results, started)
            notes, closed = _notes(resolved, results)
            if notes:
                await log._notify(notes)
            if closed:
                await announce_change(closed)
        # A finished task still holds its loop, which keys this committer in ``_committers``:
        # let go, so that a loop that ends takes its committer (and connection) with it.
        self._task = None

    async def _on_loop(self, request: AppendRequest | Post) -> Any:
        """A lone append done on the event loop's connection (see ``loopdb``): its outcome, or
        None for the writer thread to do it."""
        from sessions_app.streams import loopdb

        if not isinstance(request, Post):
            return None
        if self._loop_db is None:
            if not loopdb.usable():
                return None
            self._loop_db = loopdb.LoopConnection()
        return await self._loop_db.append(request)


def _observe(results: Sequence[Appended | SessionError], started: float) -> None:
    """The log's commit metrics count this door's appends as the log's own."""
    entries = sum(
        r.head - r.first + 1 for r in results if isinstance(r, Appended) and not r.duplicate
    )
    metrics.COMMIT_SECONDS.observe(time.monotonic() - started)
    metrics.BATCH_SIZE.observe(entries)
    metrics.APPENDED.inc(entries)


_committers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Committer] = (
    weakref.WeakKeyDictionary()
)


async def append(request: AppendRequest | Post) -> Appended:
    loop = asyncio.get_running_loop()
    committer = _committers.get(loop)
    if committer is None:
        committer = _committers[loop] = Committer()
    return await committer.submit(request)


def with_head(stream: Stream, head: int, closed: bool) -> Stream:
    return replace(stream, head=head, closed=closed)
