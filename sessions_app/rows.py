"""The log's own bookkeeping rows, each written by one plain statement.

``Model.save()`` builds its INSERT or UPDATE through Django's query compiler every time. For
the rows the log writes on every agent turn (the run, started and ended in one append, and
the producer of the turn's first append) that building cost more CPU than the statement: the
two were a third of a commit's CPU in issue #20's dispatch profile. ``save_row`` sends the same
statement straight away, with each field's own conversions (``pre_save`` fills the
``auto_now`` stamps, ``get_db_prep_save`` adapts the value), so the row is stored exactly as
``save()`` would store it. Like the log's entries (COPY, bulk inserts), these rows are written
without Django's ``pre_save`` and ``post_save`` signals.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import connection, models


def save_row(row: models.Model) -> None:
    """Insert ``row`` (no primary key yet: it gets one) or update all its columns."""
    model = type(row)
    add = row.pk is None
    fields = _fields(model)
    values = [f.get_db_prep_save(f.pre_save(row, add), connection) for f in fields]
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
def _update_sql(model: type[models.Model]) -> str:
    q = connection.ops.quote_name
    sets = ", ".join(f"{q(f.column)} = %s" for f in _fields(model))
    return f"UPDATE {q(model._meta.db_table)} SET {sets} WHERE {q(str(model._meta.pk.column))} = %s"
