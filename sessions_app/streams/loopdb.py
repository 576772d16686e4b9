"""A lone plain append on the event loop, over a PostgreSQL connection of the loop's own.

The log's writer thread serialises appends so that group commit can batch them. A sequential
writer (one client appending and waiting for each answer) gains nothing from batching, yet
each of its appends paid for two thread hops, Django's cursor wrapper and the GIL handed
between the loop and the writer. So when the group committer has exactly one request and it
is a plain append (a body; no producer, ``Stream-Seq`` or close), this module does it on the
event loop with psycopg's async connection: the stream's lookup, then the one-statement
append (``store.append_statement``), committed on its own.

Anything else goes to the writer thread as before, with the request as it came, so the
semantics do not change: a batch, a stream whose access needs a membership query or that has
expired, a body larger than ``INLINE_BODY_MAX`` (parsed off the loop), run events, and an
append the statement did not write (the stream closed, was deleted or expired since the
lookup: the writer thread looks it up afresh and says which).

Two things make the statement cheap, each measured in bench/README.md:

- Its statements are prepared on the server (psycopg's ``prepare_threshold``, 5 uses).
  Django leaves prepared statements off so that transaction-pooling poolers work; this
  connection follows ``OPTIONS["prepare_threshold"]`` when the site sets it, and otherwise
  prepares, turning it off for good the first time the server says a prepared statement is
  missing or already exists (what a pooler in transaction mode causes). That statement never
  ran, so it is sent again unprepared.
- A stream's lookup is kept ``LOOKUP_TTL`` seconds, and a kept copy is only trusted to say
  yes: content type, TTL and owner are fixed when a stream is created (a name created again is
  a new row), and the statement itself checks that the row is still open, not deleted and not
  expired. Whatever a kept copy would refuse goes to the writer thread, which looks again. The
  one exception, an owner changed by hand in the admin, lasts at most ``LOOKUP_TTL``.

One connection per event loop (per worker process, in practice), opened on the loop's second
lone append (an event loop made for one request, as an async view under WSGI gets, opens
none) with the parameters Django's own connection would use. A failed connection is dropped
and the next append reconnects; while connecting fails, appends go to the writer thread
(which reports the outage), and a new attempt waits ``RETRY_AFTER`` seconds. The connections
of loops that have closed are closed when another loop connects, and by ``close_all``.
``SESSIONS_APP["STREAMS_LOOP_CONNECTION"] = False`` turns the whole path off.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from sessions_app.conf import setting
from sessions_app.domain.errors import NotFound, SessionError, Unavailable
from sessions_app.domain.kept import Kept
from sessions_app.streams import store
from sessions_app.streams.errors import Gone

logger = logging.getLogger(__name__)

# Bodies above this are parsed in the writer thread, off the event loop.
INLINE_BODY_MAX = 64 * 1024
RETRY_AFTER = 5.0
LOOKUP_TTL = 1.0
LOOKUPS_KEPT = 1024

# What the loop did: the request as resolved, and its result or error.
Outcome = tuple[store.AppendRequest | None, store.Appended | SessionError]

_open: weakref.WeakSet[LoopConnection] = weakref.WeakSet()
_open_lock = threading.Lock()


def usable() -> bool:
    """Whether this site's appends may take the loop's connection at all."""
    db = connections["default"]
    return bool(
        db.vendor == "postgresql"
        and settings.USE_TZ  # the statement's timestamps are aware, as the ORM's are
        and setting("STREAMS_LOOP_CONNECTION")
    )


class _Unprepared(Exception):
    """The server lost (or already had) a prepared statement: nothing was executed."""


class LoopConnection:
    """The event loop's own connection, used by one group committer (one call at a time)."""

    def __init__(self) -> None:
        self._conn: Any = None  # psycopg.AsyncConnection
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._lone = 0  # lone appends offered so far
        self._retry_at = 0.0
        self._prepare = True  # until the server shows it cannot keep prepared statements
        self._streams: Kept[str, store.Stream] = Kept(LOOKUP_TTL, LOOKUPS_KEPT)
        with _open_lock:
            _open.add(self)

    async def append(self, post: store.Post) -> Outcome | None:
        """Do ``post`` here if it is a lone plain append; None: the writer thread does it."""
        if not post.plain or len(post.body) > INLINE_BODY_MAX:
            return None
        self._lone += 1
        if self._lone < 2:
            # A loop that served one request may be the only one it serves (an async view
            # under WSGI gets a loop per request): no connection for it.
            return None
        for _attempt in range(2):
            conn = await self._connection()
            if conn is None:
                return None
            try:
                return await self._append(conn, post)
            except asyncio.CancelledError:  # mid-statement: the connection's state is unknown
                self._drop()
                raise
            except _Unprepared:
                self._prepare = False
                self._drop()
            except Exception as exc:
                return None, self._failed(exc)
        return None

    async def _append(self, conn: Any, post: store.Post) -> Outcome | None:
        now = time.monotonic()
        kept = self._streams.get(post.name, now)
        try:
            found = self._open_stream(post, kept or await self._lookup(conn, post.name, now))
            if found is None:
                return None
            request = post.resolve_in(found)
        except SessionError as exc:
            if kept is not None:
                # Judged on a kept copy: the stream may have changed since (closed, deleted,
                # created again with another type). The writer thread looks it up afresh.
                self._streams.forget(post.name)
                return None
            return None, exc
        if not request.plain:  # run events: the writer thread tracks the runs
            return None
        sql, params = store.append_statement(request, timezone.now())
        rows = await self._fetch(conn, sql, params)
        appended = store.appended_by_statement(request, [row[0] for row in rows])
        if appended is None:  # closed, deleted or expired since the lookup
            self._streams.forget(post.name)
            return None
        return request, appended

    async def _lookup(self, conn: Any, name: str, now: float) -> store.Stream:
        rows = await self._fetch(conn, store.load_sql(), [name])
        if not rows:
            raise NotFound("no such stream")
        stream = store.stream_from_row(rows[0])
        if not stream.deleted and not stream.closed:
            self._streams.keep(name, stream, now)
        return stream

    @staticmethod
    def _open_stream(post: store.Post, stream: store.Stream) -> store.Stream | None:
        """``store.open_stream`` when it needs no other query; None when it does."""
        allowed = post.access.decides(stream)
        if allowed is None:
            return None  # a membership decides
        if not allowed:
            raise NotFound("no such stream")
        if stream.deleted:
            raise Gone("the stream was deleted")
        if stream.expired(timezone.now()):
            return None  # 404 or 410 depends on its forks
        return stream

    async def _fetch(self, conn: Any, sql: str, params: list[Any]) -> list[Any]:
        from psycopg import errors

        try:
            cursor = await conn.execute(sql, params)
            return list(await cursor.fetchall())
        except (errors.InvalidSqlStatementName, errors.DuplicatePreparedStatement) as exc:
            raise _Unprepared from exc

    def _failed(self, exc: Exception) -> SessionError:
        import psycopg

        self._drop()  # whatever state the connection is in, the next append starts afresh
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return Unavailable(f"the database did not answer: {exc}".strip())
        logger.exception("stream append failed on the event loop's connection")
        return SessionError(f"append failed: {exc}")

    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if time.monotonic() < self._retry_at:
            return None
        import psycopg
        from psycopg import sql

        _close_orphans()
        db = connections["default"]
        options = db.settings_dict["OPTIONS"]
        params = db.get_connection_params()
        params.pop("cursor_factory", None)  # Django's are sync cursors
        params.pop("pool", None)
        if "prepare_threshold" not in options:
            params["prepare_threshold"] = 5 if self._prepare else None
        conn = None
        try:
            conn = await psycopg.AsyncConnection.connect(**params, autocommit=True)
            if role := options.get("assume_role"):
                await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        except Exception:
            logger.warning("could not open the event loop's database connection", exc_info=True)
            if conn is not None:
                await conn.close()
            self._retry_at = time.monotonic() + RETRY_AFTER
            return None
        self._conn, self._loop = conn, weakref.ref(asyncio.get_running_loop())
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.pgconn.finish()

    def orphaned(self) -> bool:
        """Whether this connection's event loop is gone or closed."""
        loop = self._loop() if self._loop is not None else None
        return self._conn is not None and (loop is None or loop.is_closed())

    def close(self) -> None:
        """Close the connection from any thread: on its loop when that runs elsewhere."""
        loop = self._loop() if self._loop is not None else None
        if loop is not None and loop.is_running() and not _in(loop):

            async def close_there() -> None:
                self._streams.clear()
                self._drop()

            try:
                asyncio.run_coroutine_threadsafe(close_there(), loop).result(timeout=5)
            except Exception:  # the loop is stuck or stopping: leave it to the process's end
                logger.warning("could not close an event loop's database connection")
            return
        self._streams.clear()
        self._drop()


def _close_orphans() -> None:
    """Close the connections of event loops that are gone (a loop that ran and stopped)."""
    with _open_lock:
        orphans = [each for each in _open if each.orphaned()]
    for each in orphans:
        each._drop()


def _in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def close_all() -> None:
    """Close every event loop's connection (tests do before the test database is dropped)."""
    with _open_lock:
        open_now = list(_open)
    for each in open_now:
        each.close()
