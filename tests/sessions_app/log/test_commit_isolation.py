"""One append that the database refuses does not take the others of its group commit with it:
they land, and only the refused one gets the error."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import override_settings

from sessions_app import log, services
from sessions_app.domain import control
from sessions_app.domain.errors import SessionError
from sessions_app.models import Entry, Session, Turn

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


def message(session: Session, text: str, turn_input: dict | None = None) -> log.AppendRequest:
    _, events = control.user_message(text)
    request = services.request(session.pk, events)
    request.turn_input = turn_input
    return request


@override_settings(SESSIONS_APP={"TURNS": {"agent": "echo"}, "GROUP_COMMIT_WINDOW": 0.5})
async def test_a_value_the_database_refuses_fails_only_its_own_append(alice):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's JSON is text and keeps a NUL: PostgreSQL's jsonb refuses it")
    good = await db(Session.objects.create)(name="good", owner=alice)
    bad = await db(Session.objects.create)(name="bad", owner=alice)
    # A NUL inside the turn's input: jsonb refuses it (a DataError), as server code calling the
    # log directly could send it; the doors refuse it before it gets this far.
    results = await asyncio.gather(
        log.append(message(good, "hello")),
        log.append(message(bad, "hi", {"state": {"x": "a\x00b"}})),
        log.append(message(good, "and again")),
        return_exceptions=True,
    )
    first, refused, second = results
    assert isinstance(first, log.AppendResult) and isinstance(second, log.AppendResult), results
    assert isinstance(refused, SessionError) and refused.status == 400, refused
    assert refused.as_dict()["code"] == "bad_request" and "\\u0000" not in refused.message
    assert await db(Entry.objects.filter(session=bad).count)() == 0
    assert await db(Turn.objects.filter(session=bad).count)() == 0
    assert await db(Turn.objects.filter(session=good).count)() == 2


@override_settings(SESSIONS_APP={"TURNS": {"agent": "echo"}})
async def test_a_lone_append_the_database_refuses_is_a_bad_request_that_writes_nothing(alice):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's JSON is text and keeps a NUL: PostgreSQL's jsonb refuses it")
    bad = await db(Session.objects.create)(name="bad", owner=alice)
    with pytest.raises(SessionError) as refused:
        await log.append(message(bad, "hi", {"state": {"x": "a\x00b"}}))
    assert refused.value.status == 400 and refused.value.as_dict()["reason"] == "unstorable"
    assert await db(Entry.objects.filter(session=bad).count)() == 0
