"""The feedback table the admin filters: written by the commit that appends each rating, so it
says what the fold says (a later rating by the same user replaces the earlier one, another
user's stays), with the run and agent that answered; the migration's backfill rebuilds it from
ratings logged before the table existed."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.db import connection

from sessions_app import feedback, log
from sessions_app.models import Feedback
from tests.sessions_app.test_feedback import answer

pytestmark = pytest.mark.django_db(transaction=True)


def rate(session, user, rating, comment=None, correction=None, message="a1"):
    log.append_sync(feedback.request(user, session.pk, message, rating, comment, correction))


def table(session):
    return {
        row.user: (row.rating, row.comment, row.correction)
        for row in Feedback.objects.filter(session=session, message="a1")
    }


def folded(session):
    message = log.fold_session(session.pk).messages["a1"]
    return {
        user: (entry["rating"], entry.get("comment", ""), entry.get("correction", ""))
        for user, entry in message.feedback.items()
    }


def test_a_later_rating_replaces_the_users_row_and_another_users_stays(session):
    answer(session)
    rate(session, "ana", "down", comment="too long", correction="Paris.")
    rate(session, "bo", "up")
    rate(session, "ana", "up")  # no comment this time: the earlier comment goes
    assert table(session) == {"ana": ("up", "", ""), "bo": ("up", "", "")}
    assert table(session) == folded(session)
    rows = Feedback.objects.filter(session=session)
    assert {(row.run_id, row.agent) for row in rows} == {("r1", "helper")}
    ana = rows.get(user="ana")
    assert ana.seq == log.fold_session(session.pk).seq  # the offset of the latest rating


def test_ratings_in_one_append_batch_land_in_order(session):
    answer(session)
    log.commit(
        [
            feedback.request("ana", session.pk, "a1", "down", "no", None),
            feedback.request("ana", session.pk, "a1", "up", "yes", None),
        ]
    )
    assert table(session) == {"ana": ("up", "yes", "")} == folded(session)


def test_the_migration_backfills_ratings_logged_before_the_table(session):
    answer(session)
    rate(session, "ana", "down", correction="Paris.")
    rate(session, "ana", "up", comment="fine")
    rate(session, "bo", "down")
    Feedback.objects.all().delete()  # as if logged before migration 0007
    migration = importlib.import_module("sessions_app.migrations.0007_feedback_usage_export")
    migration.backfill_feedback(django_apps, connection.schema_editor())
    assert table(session) == {"ana": ("up", "fine", ""), "bo": ("down", "", "")}
    assert table(session) == folded(session)
    assert set(Feedback.objects.values_list("agent", flat=True)) == {"helper"}
