"""The group commit window: a caller that waits for each answer does not wait for company that
is not coming; appends that come together still share a commit."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from sessions_app import log
from sessions_app.models import Entry, Session

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


def items(*bodies):
    return [log.Item(f'{{"type":"CUSTOM","data":{{"name":"{b}"}}}}', "CUSTOM") for b in bodies]


WINDOW = 5.0  # seconds: far longer than a commit takes on a loaded machine


@override_settings(SESSIONS_APP={"GROUP_COMMIT_WINDOW": WINDOW})
async def test_one_by_one_appends_do_not_wait_for_the_window(alice):
    session = await db(Session.objects.create)(name="lone", owner=alice)
    await log.append(log.AppendRequest(session.pk, items("first")))
    started = time.monotonic()
    for i in range(1, 4):
        result = await log.append(log.AppendRequest(session.pk, items(f"e{i}")))
        assert result.first == i + 1
    # Waiting for the window each time would take three windows (15 s); three one-row commits
    # of a starved CI process took 2.2 s.
    assert time.monotonic() - started < 1.5 * WINDOW
    count = await db(Entry.objects.filter(session=session).count)()
    assert count == 4


@override_settings(SESSIONS_APP={"GROUP_COMMIT_WINDOW": 0.05})
async def test_after_a_shared_commit_the_window_gathers_appends_again(alice):
    session = await db(Session.objects.create)(name="busy", owner=alice)
    committer = log.committer()
    await asyncio.gather(*(log.append(log.AppendRequest(session.pk, items(i))) for i in "ab"))
    before = committer.transactions
    first = log.append_queued(log.AppendRequest(session.pk, items("c")))
    await asyncio.sleep(0)  # the second arrives a loop turn later, within the window
    second = log.append_queued(log.AppendRequest(session.pk, items("d")))
    results = await asyncio.gather(first, second)
    assert committer.transactions - before == 1
    assert [r.first for r in results] == [3, 4]
