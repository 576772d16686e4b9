"""The log's threads send their statements bound and prepared on PostgreSQL (log/binding.py),
follow the site's own choice when it makes one, and survive a pooler that loses prepared
statements: the one append that meets it is refused as unavailable, nothing is written twice
or lost, and the next appends go through unprepared."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from sessions_app import dbexec, log
from sessions_app.domain.errors import Unavailable
from sessions_app.domain.producers import ProducerClaim
from sessions_app.log import binding
from sessions_app.models import Entry, Session

pytestmark = [pytest.mark.real_engines, pytest.mark.django_db(transaction=True)]
db = database_sync_to_async


@pytest.fixture(autouse=True)
def _preparing(monkeypatch):
    """Each test starts as a fresh process does (a lost statement turns preparing off)."""
    monkeypatch.setattr(binding, "PREPARING", True)


def item(i: int) -> log.Item:
    return log.Item(f'{{"type":"CUSTOM","data":{{"i":{i}}}}}', "CUSTOM")


async def append(session: Session, seq: int) -> log.AppendResult:
    # A producer's append goes through the writer thread (not the loop's connection).
    claim = ProducerClaim("p", 0, seq)
    return await log.append(log.AppendRequest(session.pk, [item(seq)], producer=claim))


def writer_state() -> tuple[int, object]:
    """The writer thread's connection: its prepared statements and cursor class."""

    def read() -> tuple[int, object]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            return int(cursor.fetchone()[0]), connection.connection.cursor_factory

    return dbexec.run_write(read)


async def test_the_writer_prepares_its_statements_on_the_server(alice):
    session = await db(Session.objects.create)(name="bound", owner=alice)
    for seq in range(8):
        assert (await append(session, seq)).first == seq + 1
    prepared, cursor_class = await writer_state()
    assert prepared >= 3  # the session's lock, its head, the producer's row, after five uses
    assert cursor_class.__name__ == "Cursor"  # bound on the server, not psycopg's ClientCursor
    assert await db(Entry.objects.filter(session=session).count)() == 8


async def test_a_site_that_turns_preparing_off_is_obeyed(alice, monkeypatch):
    # DATABASES["default"]["OPTIONS"] = {"prepare_threshold": None}, as behind an old pooler.
    options = {**connection.settings_dict["OPTIONS"], "prepare_threshold": None}
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    await db(dbexec.shutdown)()  # the threads connect again, with the site's options
    try:
        session = await db(Session.objects.create)(name="unprepared", owner=alice)
        for seq in range(8):
            await append(session, seq)
        prepared, _ = await writer_state()
    finally:
        await db(dbexec.shutdown)()
    assert prepared == 0
    assert await db(Entry.objects.filter(session=session).count)() == 8


async def test_statements_lost_by_a_pooler_refuse_one_append_then_go_unprepared(alice):
    session = await db(Session.objects.create)(name="pooled", owner=alice)
    for seq in range(8):
        await append(session, seq)

    def deallocate() -> None:  # what a pooler does: the next server process never saw them
        connection.connection.pgconn.exec_(b"DEALLOCATE ALL")

    await dbexec.run_write(deallocate)
    with pytest.raises(Unavailable):
        await append(session, 8)
    assert binding.PREPARING is False
    for seq in range(8, 12):  # the refused append again (the producer's retry), then more
        assert (await append(session, seq)).first == seq + 1
    prepared, _ = await writer_state()
    assert prepared == 0
    bodies = await db(list)(
        Entry.objects.filter(session=session).order_by("seq").values_list("seq", flat=True)
    )
    assert bodies == list(range(1, 13))  # each once, in order
