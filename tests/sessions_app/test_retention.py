"""Retention: expired entries fold into the snapshot; a resume below them is told so."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.utils import timezone

from sessions_app import log, services
from sessions_app.models import Entry, Session
from tests.sessions_app.conftest import connect, text

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


def age_entries(session, up_to_seq, days):
    Entry.objects.filter(session=session, seq__lte=up_to_seq).update(
        created_at=timezone.now() - timedelta(days=days)
    )


def prune():
    call_command("prune_sessions", stdout=io.StringIO())


async def test_old_entries_fold_into_the_snapshot_and_readers_see_the_same_state(alice, session):
    async with connect(alice) as client:
        await client.publish(
            "chat-1",
            [{"type": "RUN_STARTED", "run": "r1"}, *[text(delta=d) for d in "abcdef"],
             {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": "success"}}],
        )  # fmt: skip
        frames, _ = await client.subscribe("chat-1", after="snapshot")
        before = frames[0]["state"]
    session.retention_days = 7
    await db(session.save)()
    await db(age_entries)(session, 5, days=8)
    await db(prune)()
    await db(session.refresh_from_db)()
    assert (session.tail, session.head) == (5, 8)
    assert await db(Entry.objects.filter(session=session).count)() == 3
    async with connect(alice) as device:
        frames, caught_up = await device.subscribe("chat-1", after="snapshot")
        assert frames[0]["state"] == before
        assert caught_up["offset"].endswith("0008")
    async with connect(alice) as late:
        _, refused = await late.subscribe("chat-1", after="0000000000000000_0000000000000002")
        assert refused["code"] == "offset_expired"
        assert refused["earliest"].endswith("0005") and refused["resume"] == "snapshot"
        replayed, _ = await late.subscribe("chat-1", after="0000000000000000_0000000000000005")
        assert [e["offset"][-1] for e in replayed] == ["6", "7", "8"]


async def test_the_site_default_applies_to_sessions_without_their_own_retention(
    alice, session, settings
):
    settings.SESSIONS_APP = {"RETENTION_DAYS": 1}
    async with connect(alice) as client:
        await client.publish("chat-1", [text(delta=d) for d in "abc"])
    await db(age_entries)(session, 3, days=2)
    await db(prune)()
    await db(session.refresh_from_db)()
    assert session.tail == 3
    settings.SESSIONS_APP = {}


async def test_without_retention_nothing_is_pruned(alice, session):
    async with connect(alice) as client:
        await client.publish("chat-1", [text(delta=d) for d in "abc"])
    await db(age_entries)(session, 3, days=3650)
    await db(prune)()
    assert await db(Entry.objects.filter(session=session).count)() == 3


def test_expired_sessions_are_deleted_and_a_forked_parent_only_hidden(alice):
    gone = Session.objects.create(
        name="gone", owner=alice, expires_at=timezone.now() - timedelta(seconds=1)
    )
    parent = Session.objects.create(
        name="parent", owner=alice, expires_at=timezone.now() - timedelta(seconds=1)
    )
    Session.objects.create(name="fork", owner=alice, forked_from=parent)
    kept = Session.objects.create(
        name="kept", owner=alice, expires_at=timezone.now() + timedelta(days=1)
    )
    prune()
    assert not Session.objects.filter(pk=gone.pk).exists()
    parent.refresh_from_db()
    assert parent.deleted is True
    assert Session.objects.filter(pk=kept.pk, deleted=False).exists()


def test_compaction_of_a_byte_stream_just_drops_entries(alice):
    stream = Session.objects.create(
        name="bytes", owner=alice, content_type="application/octet-stream"
    )
    log.append_sync(log.AppendRequest(stream.pk, [log.Item(b"\x00\x01"), log.Item(b"\x02")]))
    assert log.compact(stream.pk, 1) == 1
    stream.refresh_from_db()
    assert stream.tail == 1 and stream.snapshot is None
    assert log.read(stream.pk, 1, 10) == [(2, b"\x02")]


async def test_finished_idle_sessions_compact_into_their_snapshot_with_the_same_fold(
    alice, session
):
    busy = await db(Session.objects.create)(name="busy", owner=alice)
    async with connect(alice) as agent:
        await agent.publish("chat-1", [{"type": "RUN_STARTED", "run": "r1"}, *[text(delta=d) for d in "done"],
                                       {"type": "RUN_FINISHED", "run": "r1"}])  # fmt: skip
        await agent.publish(
            "busy", [{"type": "RUN_STARTED", "run": "r2"}, text(delta="still going", run="r2")]
        )
        before = (await agent.subscribe("chat-1", after="snapshot"))[0][0]["state"]
    await db(Session.objects.filter(pk__in=[session.pk, busy.pk]).update)(
        last_activity=timezone.now() - timedelta(hours=1)
    )
    await db(call_command)("prune_sessions", "--compact-finished", "600", stdout=io.StringIO())
    await db(session.refresh_from_db)()
    await db(busy.refresh_from_db)()
    assert (session.tail, session.head) == (6, 6) and busy.tail == 0
    async with connect(alice) as device:
        frames, caught_up = await device.subscribe("chat-1", after="snapshot")
        assert frames[0]["state"] == before and caught_up["offset"].endswith("0006")


async def test_a_long_session_is_folded_once_and_later_snapshots_still_see_every_entry(
    alice, session
):
    from sessions_app.domain.fold import SessionState, fold

    def whole_fold():
        rows = Entry.objects.filter(session=session).order_by("seq").values_list("seq", "body")
        return fold(((seq, log.loads(bytes(b))) for seq, b in rows), SessionState()).as_dict()

    deltas = log.CHECKPOINT_ENTRIES + 200
    async with connect(alice) as client:
        await client.publish("chat-1", [{"type": "RUN_STARTED", "run": "r1"}])
        for start in range(0, deltas, 400):
            await client.publish(
                "chat-1", [text(delta=f"<{i}>") for i in range(start, start + 400)]
            )
        first, _ = await client.subscribe("chat-1", after="snapshot")
    await db(session.refresh_from_db)()
    assert session.checkpoint_seq == session.head  # the long fold was kept
    async with connect(alice) as client:
        await client.publish(
            "chat-1", [text(delta="<late>"), {"type": "RUN_FINISHED", "run": "r1"}]
        )
        frames, caught_up = await client.subscribe("chat-1", after="snapshot")
    state = frames[0]["state"]
    assert state == await db(whole_fold)() and state != first[0]["state"]
    assert state["messages"][0]["text"].endswith("<late>")
    assert state["runs"][0]["status"] == "finished"
    # Retention folds entries past the checkpoint away: the snapshot is still the whole story.
    head = session.head + 2
    await db(log.compact)(session.pk, head - 1)
    async with connect(alice) as client:
        frames, caught_up = await client.subscribe("chat-1", after="snapshot")
    assert frames[0]["state"] == state and caught_up["offset"].endswith(str(head))


def test_retention_counts_only_what_it_did_and_holds_back_a_source_that_a_fork_reads(alice):
    source = Session.objects.create(name="source", owner=alice, retention_days=7)
    log.append_sync(services.request(source.pk, [text(delta=d) for d in "abcd"]))
    age_entries(source, 4, days=30)
    Session.objects.create(name="fork", owner=alice, forked_from=source, fork_seq=2, head=2)
    hidden = Session.objects.create(
        name="hidden", owner=alice, expires_at=timezone.now() - timedelta(seconds=1)
    )
    Session.objects.create(name="fork-2", owner=alice, forked_from=hidden)
    said = [prune_saying(), prune_saying()]
    assert said[0] == "delete 1 expired sessions; compact 0 sessions (0 entries folded"
    assert said[1] == "delete 0 expired sessions; compact 0 sessions (0 entries folded"
    assert Entry.objects.filter(session=source).count() == 4  # the fork reads 1..2
    Session.objects.filter(name="fork").delete()
    assert prune_saying() == "delete 0 expired sessions; compact 1 sessions (4 entries folded"


def prune_saying() -> str:
    out = io.StringIO()
    call_command("prune_sessions", stdout=out)
    return out.getvalue().split("Retention did: ")[1].split(" into")[0]


def test_an_anonymous_stream_of_any_json_does_not_stop_retention(alice, session):
    """An anonymous JSON stream takes any JSON (``[5, "x", [1]]``), and the fold of the
    compaction read each message as an event: ``5 .get`` stopped the whole command there."""
    anyone = Session.objects.create(name="public/any", owner=None)
    items = [log.Item(json.dumps(m)) for m in (5, "x", [1], {"n": 1})]
    log.append_sync(log.AppendRequest(anyone.pk, items))
    log.append_sync(services.request(session.pk, [text(delta="kept")]))
    Session.objects.update(last_activity=timezone.now() - timedelta(hours=1))
    call_command("prune_sessions", "--compact-finished", "600", stdout=io.StringIO())
    assert [s.tail for s in Session.objects.order_by("name")] == [1, 4]  # chat-1, public/any
