"""The log's own bookkeeping rows, written by plain statements.

``Model.save()`` builds its INSERT or UPDATE through Django's query compiler every time. For
the rows the log writes on every agent turn (the run, started and ended in one append, and
the producer of the turn's first append) that building cost more CPU than the statement: the
two were a third of a commit's CPU in issue #20's dispatch profile. ``save_row`` sends the same
statement straight away, with each field's own conversions (``pre_save`` fills the
``auto_now`` stamps, ``get_db_prep_save`` adapts the value), so the row is stored exactly as
``save()`` would store it. Like the log's entries (COPY, bulk inserts), these rows are written
without Django's ``pre_save`` and ``post_save`` signals.

A commit of many appends writes its new rows of a kind with one statement (``insert_rows``)
and its changed ones with one pipelined batch (``update_rows``): one round trip each instead of
one per row, from the writer thread that every append of the process waits on (issue #20).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models


def read_together(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
    """Run ``statements`` in order and return each one's rows. On PostgreSQL they go in one
    round trip (psycopg's pipeline mode; the transaction's BEGIN with them): the server still
    runs each after the one before has finished, with a snapshot of its own, so a read after a
    ``FOR UPDATE`` sees what the lock's previous holder wrote, as if sent alone."""
    if connection.vendor != "postgresql" or len(statements) < 2:
        found = []
        for sql, params in statements:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                found.append(list(cursor.fetchall()))
        return found
    connection.ensure_connection()
    cursors = [connection.cursor() for _ in statements]
    try:
        with connection.connection.pipeline():
            for cursor, (sql, params) in zip(cursors, statements, strict=True):
                cursor.execute(sql, params)
            return [list(cursor.fetchall()) for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


def save_row(row: models.Model) -> None:
    """Insert ``row`` (no primary key yet: it gets one) or update all its columns."""
    model = type(row)
    add = row.pk is None
    if add:
        _take_related_keys(row)
    fields = _fields(model)
    db = _this_thread()
    values = [f.get_db_prep_save(f.pre_save(row, add), db) for f in fields]
    with connection.cursor() as cursor:
        if not add:
            cursor.execute(_update_sql(model), [*values, row.pk])
        elif connection.features.can_return_columns_from_insert:
            cursor.execute(_insert_sql(model, returning=True), values)
            row.pk = cursor.fetchone()[0]
        else:  # pragma: no cover - SQLite before 3.35
            cursor.execute(_insert_sql(model, returning=False), values)
            row.pk = connection.ops.last_insert_id(cursor, model._meta.db_table, "id")
    row._state.adding = False
    row._state.db = connection.alias


def insert_rows(rows: Sequence[models.Model]) -> None:
    """Insert new rows of one model (no primary keys yet) with one statement; each gets its
    primary key, in order. A foreign key to a row inserted earlier (e.g. in a previous call)
    is taken from that row's object."""
    if not rows:
        return
    model = type(rows[0])
    if len(rows) == 1 or connection.vendor != "postgresql":
        # Elsewhere a row at a time: SQLite does not promise RETURNING's order.
        for row in rows:
            save_row(row)
        return
    fields = _fields(model)
    db = _this_thread()
    columns: list[list[Any]] = [[] for _ in fields]
    for row in rows:
        _take_related_keys(row)
        for column, f in zip(columns, fields, strict=True):
            column.append(f.get_db_prep_save(f.pre_save(row, True), db))
    with connection.cursor() as cursor:
        # From arrays: one statement text whatever the count, so psycopg and PostgreSQL
        # parse and plan it once (as Django's bulk_create does on PostgreSQL).
        cursor.execute(_insert_unnest_sql(model), columns)
        keys = [found[0] for found in cursor.fetchall()]
    if len(keys) != len(rows):  # pragma: no cover - the database broke its own contract
        raise RuntimeError(f"inserted {len(rows)} rows, {len(keys)} keys came back")
    for row, key in zip(rows, keys, strict=True):
        row.pk = key
        row._state.adding = False
        row._state.db = connection.alias


def update_rows(rows: Sequence[models.Model]) -> None:
    """Update all columns of stored rows of one model: one statement, or one pipelined batch
    of them (psycopg sends them together)."""
    if not rows:
        return
    if len(rows) == 1:
        save_row(rows[0])
        return
    model = type(rows[0])
    fields = _fields(model)
    db = _this_thread()
    params = [
        [*(f.get_db_prep_save(f.pre_save(row, False), db) for f in fields), row.pk] for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(_update_sql(model), params)


def _this_thread() -> Any:
    """The default database's connection of this thread, looked up once: each attribute read
    through ``django.db.connection`` (a proxy) looks it up again, and a field's conversions read
    several; that was half the CPU of preparing a commit's new rows (issue #20)."""
    return connections[DEFAULT_DB_ALIAS]


def _take_related_keys(row: models.Model) -> None:
    """A foreign key set from an object saved after it was set (as ``Model.save`` does)."""
    for field in _relations(type(row)):
        if getattr(row, field.attname) is None:
            related = field.get_cached_value(row, default=None)
            if related is not None:
                if related.pk is None:
                    raise ValueError(f"{field.name}: its row is not stored yet")
                setattr(row, field.attname, related.pk)


@functools.cache
def _relations(model: type[models.Model]) -> list[Any]:
    return [f for f in model._meta.concrete_fields if f.is_relation]


@functools.cache
def _fields(model: type[models.Model]) -> list[Any]:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


@functools.cache
def _insert_sql(model: type[models.Model], returning: bool) -> str:
    q = connection.ops.quote_name
    columns = ", ".join(q(f.column) for f in _fields(model))
    marks = ", ".join(["%s"] * len(_fields(model)))
    pk = q(str(model._meta.pk.column))
    tail = f" RETURNING {pk}" if returning else ""
    return f"INSERT INTO {q(model._meta.db_table)} ({columns}) VALUES ({marks}){tail}"


@functools.cache
def _insert_unnest_sql(model: type[models.Model]) -> str:
    """PostgreSQL: insert the rows given as one array per column, returning their keys."""
    q = connection.ops.quote_name
    fields = _fields(model)
    columns = ", ".join(q(f.column) for f in fields)
    # The array's element type without its length (varchar, not varchar(128)), as Django's
    # own unnest insert does: the column's type still bounds what is stored.
    arrays = ", ".join(f"%s::{f.db_type(connection).split('(')[0]}[]" for f in fields)
    pk = q(str(model._meta.pk.column))
    return (
        f"INSERT INTO {q(model._meta.db_table)} ({columns}) "
        f"SELECT * FROM unnest({arrays}) RETURNING {pk}"
    )


@functools.cache
def _update_sql(model: type[models.Model]) -> str:
    q = connection.ops.quote_name
    sets = ", ".join(f"{q(f.column)} = %s" for f in _fields(model))
    return f"UPDATE {q(model._meta.db_table)} SET {sets} WHERE {q(str(model._meta.pk.column))} = %s"
