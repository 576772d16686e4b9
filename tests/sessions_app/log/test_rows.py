"""The log's runs and producers are written by one plain statement each (sessions_app/rows.py):
what is stored must be what Django's ``save()`` stores, on both engines."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from sessions_app.models import Producer, Run, Session
from sessions_app.rows import save_row

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
