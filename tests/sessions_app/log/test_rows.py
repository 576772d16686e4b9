"""The log's runs and producers are written by one plain statement each (sessions_app/rows.py):
what is stored must be what Django's ``save()`` stores, on both engines."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from sessions_app.models import Producer, Run, Session, Turn
from sessions_app.rows import insert_rows, save_row, update_rows

pytestmark = pytest.mark.django_db


def stored(row) -> dict:
    found = type(row).objects.get(pk=row.pk)
    return {k: v for k, v in model_to_dict(found).items() if k not in ("id", "run_id")}


def run_pair(session: Session) -> tuple[Run, Run]:
    now = timezone.now()
    return tuple(
        Run(
            session=session,
            run_id=f"r{i}",
            agent="helper",
            status="running",
            started_seq=7,
            heartbeat_at=now,
            cancel_deadline=now + timedelta(seconds=5),
            usage={"input_tokens": 3, "model": "m"},
        )  # fmt: skip
        for i in range(2)
    )


def test_a_run_is_stored_as_save_stores_it_then_updated_the_same(alice):
    session = Session.objects.create(name="rows", owner=alice)
    parent = Run.objects.create(session=session, run_id="parent")
    django_row, plain_row = run_pair(session)
    django_row.parent = plain_row.parent = parent
    django_row.save()
    save_row(plain_row)
    assert plain_row.pk is not None and plain_row.pk != django_row.pk
    assert stored(plain_row) == stored(django_row)
    assert Run.objects.get(pk=plain_row.pk).started_at is not None  # auto_now_add filled

    for row in (django_row, plain_row):
        row.status, row.reason, row.ended_at = "finished", "done", timezone.now()
        row.usage = {"input_tokens": 5}
    django_row.save()
    save_row(plain_row)
    assert stored(plain_row) == {**stored(django_row), "ended_at": plain_row.ended_at}
    assert Run.objects.get(pk=plain_row.pk).usage == {"input_tokens": 5}
    assert Run.objects.count() == 3  # an update, not another row


def test_a_producer_gets_its_id_and_its_stamp(alice):
    session = Session.objects.create(name="rows-producer", owner=alice)
    before = timezone.now()
    row = Producer(
        session=session, producer_id="p", epoch=2, last_seq=5, last_first=9, last_count=3
    )
    save_row(row)
    found = Producer.objects.get(pk=row.pk)
    assert (found.producer_id, found.epoch, found.last_seq, found.last_first, found.last_count) == (
        "p", 2, 5, 9, 3,
    )  # fmt: skip
    assert found.updated_at >= before - timedelta(seconds=1)


def test_rows_inserted_together_are_stored_as_save_stores_each_and_get_their_own_keys(alice):
    """``insert_rows`` (one statement on PostgreSQL) and ``update_rows``: the same rows as
    ``save()`` one by one, keys in order, a sub-run under a parent inserted before it."""
    session = Session.objects.create(name="rows-many", owner=alice)
    parent = Run(session=session, run_id="parent")
    insert_rows([parent])
    django_rows, plain_rows = run_pair(session), run_pair(session)
    more_django, more_plain = run_pair(session), run_pair(session)
    django_rows += more_django
    plain_rows += more_plain
    now = timezone.now()
    for i, (d, p) in enumerate(zip(django_rows, plain_rows, strict=True)):
        d.run_id, p.run_id = f"d{i}", f"p{i}"
        d.heartbeat_at = p.heartbeat_at = now
        d.cancel_deadline = p.cancel_deadline = now + timedelta(seconds=i)
        d.parent = p.parent = parent
        d.usage = p.usage = {"input_tokens": i, "note": "é\u2028"} if i % 2 else None
        d.save()
    insert_rows(plain_rows)
    assert [p.run_id for p in Run.objects.filter(pk__in=[p.pk for p in plain_rows])
            .order_by("pk")] == [f"p{i}" for i in range(4)]  # fmt: skip
    for d, p in zip(django_rows, plain_rows, strict=True):
        assert Run.objects.get(pk=p.pk).run_id == p.run_id  # each got its own key
        assert stored(p) == stored(d)

    for d, p in zip(django_rows, plain_rows, strict=True):
        d.status = p.status = "finished"
        d.usage = p.usage = {"output_tokens": 7}
        d.save()
    update_rows(plain_rows)
    for d, p in zip(django_rows, plain_rows, strict=True):
        assert stored(p) == stored(d)
    assert Run.objects.count() == 9


def test_turns_inserted_together_keep_their_input(alice):
    session = Session.objects.create(name="rows-turns", owner=alice)
    turns = [
        Turn(session=session, message=f"u{i}", message_seq=i + 1, agent="a",
             input={"tools": [{"name": f"t{i}"}], "state": {"n": i}} if i else {})
        for i in range(3)
    ]  # fmt: skip
    insert_rows(turns)
    found = {t.message: t.input for t in Turn.objects.filter(session=session)}
    assert found == {"u0": {}, "u1": {"tools": [{"name": "t1"}], "state": {"n": 1}},
                     "u2": {"tools": [{"name": "t2"}], "state": {"n": 2}}}  # fmt: skip
    assert [t.pk for t in turns] == sorted(t.pk for t in turns)


@pytest.mark.django_db(transaction=True)
def test_reads_sent_together_each_see_what_the_lock_s_previous_holder_wrote(alice):
    """``read_together`` (one round trip on PostgreSQL): a read after a ``FOR UPDATE`` that
    had to wait still sees the holder's commit, as if the statements were sent one by one."""
    import threading

    from django.db import connection, transaction

    from sessions_app.rows import read_together

    session = Session.objects.create(name="held", owner=alice)
    table = Session._meta.db_table
    lock = f"SELECT id FROM {table} WHERE id = %s" + (
        " FOR UPDATE" if connection.features.has_select_for_update else ""
    )
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                Session.objects.select_for_update().get(pk=session.pk)
                Session.objects.filter(pk=session.pk).update(head=41)
                holding.set()
                release.wait(10)
        finally:
            holding.set()
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(10)
    if connection.vendor == "postgresql":  # SQLite's one writer would wait for the holder
        threading.Timer(0.3, release.set).start()  # the reads wait on the lock meanwhile
    else:
        release.set()
        thread.join()
    with transaction.atomic():
        locked, heads = read_together(
            [(lock, [session.pk]), (f"SELECT head FROM {table} WHERE id = %s", [session.pk])]
        )
    thread.join()
    assert locked == [(session.pk,)]
    assert heads == [(41,)]
