"""How the log's own database connections send their statements: bound and prepared on
the server.

Django's PostgreSQL backend binds parameters on the client (psycopg quotes the values into
the SQL text in Python) and prepares nothing, so that transaction-pooling poolers work. The
log's threads (``log.executors``) and the event loop's connection (``log.lanes``) send a few
statements thousands of times a second: on PostgreSQL with psycopg 3 their connections bind
on the server and psycopg prepares a statement after ``PREPARE_THRESHOLD`` uses, so the server
parses and plans it once per connection and bytes travel as binary instead of escaped text.
The rest of the site keeps Django's settings.

The site's ``DATABASES["default"]["OPTIONS"]`` win: ``server_side_binding`` is the site's
choice when set, and ``"prepare_threshold": None`` turns preparing off (as a pooler in
transaction mode without prepared-statement support, PgBouncer before 1.21, needs). When not
set, the log prepares until the server first says that a prepared statement is missing or
already exists (a pooler moved the session under it): ``unpreparable`` then turns it off for
good in this process, and the failed call reaches its caller as ``Unavailable`` to retry.
"""

from __future__ import annotations

from typing import Any

PREPARE_THRESHOLD = 5
# False once the server showed that it cannot keep prepared statements (this process).
PREPARING = True


def prepare_threshold(options: dict[str, Any]) -> int | None:
    """How many uses before psycopg prepares a statement; ``None``: never."""
    if "prepare_threshold" in options:
        return options["prepare_threshold"]
    return PREPARE_THRESHOLD if PREPARING else None


def unpreparable(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) says the server lost a prepared statement;
    if so, the log prepares nothing more in this process."""
    global PREPARING
    try:
        from psycopg import errors
    except ImportError:  # pragma: no cover - psycopg 2 prepares nothing here
        return False
    lost = (errors.InvalidSqlStatementName, errors.DuplicatePreparedStatement)
    while exc is not None:
        if isinstance(exc, lost):
            PREPARING = False
            return True
        exc = exc.__cause__
    return False


def bind(db: Any) -> None:
    """Make ``db`` (a Django connection, this thread's) bind and prepare on the server."""
    if db.vendor != "postgresql":
        return
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg 2: Django's defaults
        return
    db.ensure_connection()
    raw = db.connection
    if not isinstance(raw, psycopg.Connection):  # pragma: no cover - psycopg 2
        return
    options = db.settings_dict["OPTIONS"]
    threshold = prepare_threshold(options)
    if raw.prepare_threshold != threshold:
        raw.prepare_threshold = threshold
    if options.get("server_side_binding") is None and raw.cursor_factory is not psycopg.Cursor:
        raw.cursor_factory = psycopg.Cursor
