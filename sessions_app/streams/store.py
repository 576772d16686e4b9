"""The stream service: Durable Streams semantics over the session log's tables.

A stream is a ``Session`` row; its entries are ``Entry`` rows, one per JSON message or per
appended byte chunk. This module creates, forks, deletes and reads streams, and turns a POST
into the log's ``AppendRequest`` (``Post``); the log alone judges and writes appends, for this
door as for every other, so the WebSocket door and this one can write to the same session at
once, offsets stay gap-free and in commit order, and WebSocket subscribers see these appends.

Protocol state the session columns have no place for (the last ``Stream-Seq``, written by the
log; the original ``Stream-Expires-At`` text, the fork request) lives under
``metadata["durable_streams"]``.

A fork shares its source's entries ``1..fork_seq``: the log's reads walk up the ``forked_from``
chain (``sessions_app.log.forks``).
A stream with forks is only soft-deleted; deleting the last fork removes soft-deleted (or
expired) ancestors that nothing references any more.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sessions_app import log, services
from sessions_app.access import Actor, check_creatable_name, check_quota, decides
from sessions_app.conf import setting
from sessions_app.domain import producers
from sessions_app.domain.errors import (
    BadRequest,
    Conflict,
    LimitExceeded,
    NotFound,
    OffsetExpired,
    SessionError,
)
from sessions_app.domain.kept import Kept
from sessions_app.domain.offsets import format_offset
from sessions_app.log import STATE_KEY, announce_change, change_group
from sessions_app.log.requests import Fetch
from sessions_app.models import Membership, Session
from sessions_app.streams import protocol
from sessions_app.streams.errors import ContentTypeMismatch, Forbidden, Gone, Unauthorized

__all__ = ["announce_change", "change_group"]  # the log's, used through this module too

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
    login: str | None = None  # the session cookie's key, when the cookie let the actor in

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
        return decides(self.actor, stream.name, stream.owner_id, self.prefix)

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
        if fork is not None and owner is None and fork.source.owner_id is not None:
            # Anyone may read an anonymous stream: as a fork, it would publish what it inherits.
            raise Forbidden("a session of a user cannot be forked into an anonymous stream")
        if fork is not None and owner is not None and fork.source.owner_id is None:
            if fork.source.json:  # a session's entries are events; an anonymous stream's any JSON
                raise Forbidden("a user's session cannot be forked from an anonymous JSON stream")
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
    # The source's row is locked until the fork commits: compaction (which locks it too) then
    # either ran before, and its tail is seen here, or runs after and sees the fork.
    locked = Session.objects.select_for_update().filter(pk=source.pk).values_list("tail")
    if anchor < max(source.tail, *(int(tail) for (tail,) in locked)):
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
    log.seed(session.pk, base + 1, items, now)
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


def read(stream: Stream, after: int, limit: int) -> list[tuple[int, bytes]]:
    """Entries above ``after`` (own and inherited: ``log.forks``), in order, at most ``limit``."""
    return log.read(stream.pk, after, limit)


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


# --- appends: resolved here, judged and written by the log -----------------------------------

# The log's request and result: a Durable Streams append is an ``AppendRequest`` with the
# protocol's fields (Stream-Seq, close, TTL, size limit, this door's check of the row).
AppendRequest = log.AppendRequest
Appended = log.AppendResult

# Bodies above this are parsed in the writer thread, off the event loop.
INLINE_BODY_MAX = 64 * 1024
# How long a lookup on the event loop's connection is kept (see ``Post.resolve_on_loop``).
LOOKUP_TTL = 1.0
LOOKUPS_KEPT = 1024
_kept: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Kept[str, Stream]] = (
    weakref.WeakKeyDictionary()
)


def _loop_lookups() -> Kept[str, Stream]:
    loop = asyncio.get_running_loop()
    found = _kept.get(loop)
    if found is None:
        found = _kept[loop] = Kept(LOOKUP_TTL, LOOKUPS_KEPT)
    return found


def gone(row: log.Locked) -> None:
    """This door's answers for a stream deleted or expired since its lookup (410, 404)."""
    if row.deleted:
        raise Gone("the stream was deleted")
    raise NotFound("no such stream (it expired)")


@dataclass(frozen=True)
class Post:
    """An append by stream name, as a request gives it (a ``log.Deferred``).

    The stream is looked up, its access and content type checked and the body parsed just
    before the commit: in the writer thread (one thread hop per append instead of a read then
    a write), or, for a lone plain append on PostgreSQL, on the event loop's own connection.
    A batch looks all its appends up before its first write, so no row lock it takes is held
    during a lookup.
    """

    access: Access
    name: str
    body: bytes
    media_type: str  # the request's Content-Type, without parameters ("" when absent)
    producer: producers.ProducerClaim | None = None
    seq: str | None = None
    close: bool = False

    def resolve(self) -> log.AppendRequest:
        return self.resolve_in(open_stream(self.access, self.name))

    def resolve_in(self, stream: Stream) -> log.AppendRequest:
        """This append to ``stream``, which ``open_stream`` gave for this request."""
        items: list[log.Item] = []
        if self.body and not stream.closed:  # a closed stream answers 409 before any body check
            if self.media_type != protocol.media_type(stream.content_type):
                raise ContentTypeMismatch(
                    f"the stream's content type is {stream.content_type}; send that"
                )
            session = stream.owner_id is not None and stream.json
            items = items_for(stream.json, session, self.body, creating=False)
        return log.AppendRequest(
            stream.pk,
            items,
            self.producer,
            stream_seq=self.seq,
            close=self.close,
            has_body=bool(self.body),
            ttl=stream.ttl_seconds if "ttl" in stream.state else None,
            max_bytes=setting("ANONYMOUS_MAX_STREAM_BYTES") if stream.owner_id is None else None,
            when_gone=gone,
        )

    @property
    def plain(self) -> bool:
        """Nothing but a body: whatever it appends has no producer, Stream-Seq or close."""
        return bool(self.body) and self.producer is None and self.seq is None and not self.close

    async def resolve_on_loop(self, fetch: Fetch) -> log.AppendRequest | None:
        """Resolve over the event loop's connection: the stream's lookup (kept ``LOOKUP_TTL``
        seconds), access and parsing. None leaves it to the writer thread: a large body
        (parsed off the loop), a stream whose access needs a membership query or that has
        expired (404 or 410 depends on its forks), and any refusal judged on a kept copy.

        A kept copy is only trusted to say yes: content type, TTL and owner are fixed when a
        stream is created (a name created again is a new row), and the log's statement checks
        that the row is still open, not deleted and not expired. The one exception, an owner
        changed by hand in the admin, lasts at most ``LOOKUP_TTL``.
        """
        if len(self.body) > INLINE_BODY_MAX:
            return None
        kept_lookups = _loop_lookups()
        now = time.monotonic()
        kept = kept_lookups.get(self.name, now)
        try:
            stream = kept or await self._lookup(fetch, kept_lookups, now)
            if stream is None:
                return None
            found = self._open_on_loop(stream)
            return None if found is None else self.resolve_in(found)
        except SessionError:
            if kept is not None:
                # Judged on a kept copy: the stream may have changed since (closed, deleted,
                # created again with another type). The writer thread looks it up afresh.
                kept_lookups.forget(self.name)
                return None
            raise

    async def _lookup(self, fetch: Fetch, kept: Kept[str, Stream], now: float) -> Any:
        rows = await fetch(load_sql(), [self.name])
        if rows is None:
            return None
        if not rows:
            raise NotFound("no such stream")
        stream = stream_from_row(rows[0])
        if not stream.deleted and not stream.closed:
            kept.keep(self.name, stream, now)
        return stream

    def _open_on_loop(self, stream: Stream) -> Stream | None:
        """``open_stream`` when it needs no other query; None when it does."""
        allowed = self.access.decides(stream)
        if allowed is None:
            return None  # a membership decides
        if not allowed:
            raise NotFound("no such stream")
        if stream.deleted:
            raise Gone("the stream was deleted")
        if stream.expired(timezone.now()):
            return None  # 404 or 410 depends on its forks
        return stream

    def written_nothing(self) -> None:
        """The statement found the stream closed, deleted or expired since the lookup."""
        _loop_lookups().forget(self.name)


async def append(post: Post | log.AppendRequest) -> Appended:
    """Append through the log's group committer, with no window: this door's callers wait
    for each answer, and a lone sequential writer should not pay for batching it cannot use."""
    return await log.append(post, window=0)


def with_head(stream: Stream, head: int, closed: bool) -> Stream:
    return replace(stream, head=head, closed=closed)
