"""The event loop's own PostgreSQL connection: an executor strategy of the log's writer for
a lone plain append, open to every door.

The writer thread serialises appends so that group commit can batch them. A sequential
writer (one client appending and waiting for each answer) gains nothing from batching, yet
each of its appends paid for two thread hops, Django's cursor wrapper and the GIL handed
between the loop and the writer. So when the group committer has exactly one request and it
is a plain append (entries only: no producer, ``Stream-Seq``, close or run events), it runs
the log's one-statement append (``commit.append_statement``) here, with psycopg's async
connection, committed on its own. A door that appends by name (Durable Streams) looks the
session up over the same connection first (``Deferred.resolve_on_loop``).

Two things make it cheap, each measured in bench/README.md:

- Its statements are prepared on the server, by the rule of the log's threads
  (``log.binding``): the site's ``OPTIONS["prepare_threshold"]`` when set, otherwise after
  5 uses until the server first says a prepared statement is missing or already exists
  (what a pooler in transaction mode causes). That statement never ran, so it is sent again
  unprepared.
- No thread hop: the statement runs on the loop.

One connection per event loop (per worker process, in practice), opened on the loop's second
lone append (an event loop made for one request, as an async view under WSGI gets, opens
none) with the parameters Django's own connection would use. A failed connection is dropped
and the next append reconnects; while connecting fails, appends go to the writer thread
(which reports the outage), and a new attempt waits ``RETRY_AFTER`` seconds. The connections
of loops that have closed are closed when another loop connects, and by ``close_all``.
``SESSIONS_APP["STREAMS_LOOP_CONNECTION"] = False`` turns the lane off for every door.
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

from sessions_app.conf import setting
from sessions_app.domain.errors import SessionError, Unavailable
from sessions_app.log.binding import prepare_threshold, unpreparable

logger = logging.getLogger("sessions_app.log")

RETRY_AFTER = 5.0

_open: weakref.WeakSet[LoopConnection] = weakref.WeakSet()
_open_lock = threading.Lock()
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopConnection] = (
    weakref.WeakKeyDictionary()
)


def usable() -> bool:
    """Whether this site's appends may take the loop's connection at all."""
    db = connections["default"]
    return bool(
        db.vendor == "postgresql"
        and settings.USE_TZ  # the statement's timestamps are aware, as the ORM's are
        and setting("STREAMS_LOOP_CONNECTION")
    )


def for_this_loop() -> LoopConnection | None:
    """This event loop's connection, made on first use; None when the site may not use one
    (asked once per loop: it reads Django's connection settings)."""
    loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        if not usable():
            return None
        found = _by_loop[loop] = LoopConnection()
    return found


def current() -> Any:
    """The psycopg connection this event loop's lone appends use now (None: none open)."""
    found = _by_loop.get(asyncio.get_running_loop())
    return None if found is None else found._conn


class LaneFailed(Exception):
    """The statement failed on the loop's connection; ``error`` is what the caller hears."""

    def __init__(self, error: SessionError) -> None:
        super().__init__(error.message)
        self.error = error


class _Unprepared(Exception):
    """The server lost (or already had) a prepared statement: nothing was executed."""


class LoopConnection:
    """The event loop's own connection, used by its group committer (one call at a time)."""

    def __init__(self) -> None:
        self._conn: Any = None  # psycopg.AsyncConnection
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._lone = 0  # lone appends offered so far
        self._retry_at = 0.0
        with _open_lock:
            _open.add(self)

    def take(self) -> bool:
        """Whether to take this lone append; the loop's first is left to the writer thread:
        a loop that served one request may be the only one it serves (an async view under
        WSGI gets a loop per request), and it gets no connection."""
        self._lone += 1
        return self._lone >= 2

    async def fetch(self, sql: str, params: list[Any]) -> list[Any] | None:
        """Run one statement; its rows, or None when there is no connection (writer thread).
        Raises ``LaneFailed`` when the statement failed (the connection is dropped)."""
        for _attempt in range(2):
            conn = await self._connection()
            if conn is None:
                return None
            try:
                return await self._fetch(conn, sql, params)
            except asyncio.CancelledError:  # mid-statement: the connection's state is unknown
                self._drop()
                raise
            except _Unprepared:  # prepared statements are now off (``unpreparable``)
                self._drop()
            except Exception as exc:
                raise LaneFailed(self._failed(exc)) from exc
        return None

    async def _fetch(self, conn: Any, sql: str, params: list[Any]) -> list[Any]:
        import psycopg

        try:
            cursor = await conn.execute(sql, params)
            return list(await cursor.fetchall())
        except psycopg.Error as exc:
            if unpreparable(exc):
                raise _Unprepared from exc
            raise

    def _failed(self, exc: Exception) -> SessionError:
        import psycopg

        self._drop()  # whatever state the connection is in, the next append starts afresh
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return Unavailable(f"the database did not answer: {exc}".strip())
        logger.exception("append failed on the event loop's connection")
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
        params["prepare_threshold"] = prepare_threshold(options)
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
                self._drop()

            try:
                asyncio.run_coroutine_threadsafe(close_there(), loop).result(timeout=5)
            except Exception:  # the loop is stuck or stopping: leave it to the process's end
                logger.warning("could not close an event loop's database connection")
            return
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
