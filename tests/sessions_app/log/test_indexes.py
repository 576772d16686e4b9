"""The log's busiest tables carry no index that another of their indexes already serves.

Every entry, run, producer and turn change writes each index of its table: an index whose
columns lead another index (the session foreign key's own, beside the unique (session, ...)
one) costs a write on every append and serves no lookup the longer one does not (issue #20).
"""

from __future__ import annotations

import pytest
from django.db import connection

from sessions_app import log, services
from sessions_app.models import Entry, Producer, Run, Session, Turn

pytestmark = pytest.mark.django_db(transaction=True)

WRITTEN_ON_EVERY_TURN = [Entry, Producer, Run, Turn]


def indexes(table: str) -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    return {
        name: list(spec["columns"])
        for name, spec in found.items()
        if (spec["index"] or spec["unique"]) and not spec["primary_key"] and spec["columns"]
    }


@pytest.mark.parametrize("model", WRITTEN_ON_EVERY_TURN, ids=lambda m: m.__name__)
def test_no_index_is_the_leading_columns_of_another(model):
    found = indexes(model._meta.db_table)
    served = [
        (name, other)
        for name, columns in found.items()
        for other, longer in found.items()
        if other != name and len(longer) > len(columns) and longer[: len(columns)] == columns
    ]
    assert served == [], f"{model.__name__}: indexes another one serves: {served}"


def test_deleting_a_session_still_takes_its_log_runs_producers_and_turns(alice):
    session = Session.objects.create(name="gone", owner=alice, metadata={"turns": {"agent": "a"}})
    events = [
        {"type": "TEXT_MESSAGE_START", "message": "u1", "data": {"role": "user"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": "u1", "data": {"delta": "hi"}},
        {"type": "TEXT_MESSAGE_END", "message": "u1"},
    ]
    log.append_sync(services.request(session.pk, events))
    log.append_sync(
        services.request(
            session.pk,
            [{"type": "RUN_STARTED", "run": "r1"}, {"type": "RUN_FINISHED", "run": "r1"}],
            {"id": "p1", "epoch": 0, "seq": 0},
        )
    )
    owned = [Entry, Producer, Run, Turn]
    assert all(m.objects.filter(session=session).exists() for m in owned)
    session.delete()
    assert not any(m.objects.filter(session_id=session.pk).exists() for m in owned)
