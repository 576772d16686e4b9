"""The log service: offsets, group commit, idempotent producers, fan-out."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from sessions_app import log
from sessions_app.domain.errors import NotFound, ProducerStaleEpoch, StreamClosed
from sessions_app.domain.producers import ProducerClaim
from sessions_app.models import Entry, Session

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


def items(*bodies):
    return [log.Item(f'{{"type":"CUSTOM","data":{{"name":"{b}"}}}}', "CUSTOM") for b in bodies]


async def test_concurrent_appends_share_transactions_and_get_distinct_contiguous_offsets(alice):
    sessions = [await db(Session.objects.create)(name=f"s{i}", owner=alice) for i in range(3)]
    requests = [log.AppendRequest(sessions[i % 3].pk, items(f"e{i}a", f"e{i}b")) for i in range(60)]
    before = log.committer().transactions
    results = await asyncio.gather(*(log.append(r) for r in requests))
    made = log.committer().transactions - before
    assert made < 60 / 2, f"60 appends took {made} transactions"
    for session in sessions:
        mine = sorted(
            seq
            for r, res in zip(requests, results, strict=True)
            if r.session_pk == session.pk
            for seq in res.seqs
        )
        assert mine == list(range(1, 41))
        await db(session.refresh_from_db)()
        assert session.head == 40


async def test_a_refused_append_in_a_batch_does_not_sink_the_others(alice, caplog):
    caplog.set_level("INFO", logger="sessions_app.log")
    open_, closed = (await db(Session.objects.create)(name="open", owner=alice),
                     await db(Session.objects.create)(name="closed", owner=alice, closed=True))  # fmt: skip
    outcomes = await asyncio.gather(
        log.append(log.AppendRequest(open_.pk, items("a"))),
        log.append(log.AppendRequest(closed.pk, items("b"))),
        log.append(log.AppendRequest(open_.pk, items("c"))),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], StreamClosed)
    assert [o.first for o in (outcomes[0], outcomes[2])] == [1, 2]
    assert await db(Entry.objects.filter(session=closed).count)() == 0
    # The refusal is logged with the session it concerns; the appends that landed are not.
    logged = [r for r in caplog.records if r.name == "sessions_app.log"]
    assert [(r.getMessage()[:14], r.session) for r in logged] == [("append refused", closed.pk)]


async def test_an_absent_session_is_not_found(alice):
    with pytest.raises(NotFound):
        await log.append(log.AppendRequest(987654, items("x")))


async def test_producer_epochs_fence_off_an_old_instance(alice, session):
    first = await log.append(log.AppendRequest(session.pk, items("a"), ProducerClaim("p", 1, 0)))
    again = await log.append(log.AppendRequest(session.pk, items("a"), ProducerClaim("p", 1, 0)))
    assert again.duplicate and again.seqs == first.seqs
    await log.append(log.AppendRequest(session.pk, items("b"), ProducerClaim("p", 2, 0)))
    with pytest.raises(ProducerStaleEpoch):
        await log.append(log.AppendRequest(session.pk, items("c"), ProducerClaim("p", 1, 1)))
    assert await db(Entry.objects.filter(session=session).count)() == 2


async def test_subscribers_are_notified_after_commit_with_the_entries(alice, session):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(log.group_name(session.pk), channel)
    result = await log.append(log.AppendRequest(session.pk, items("a", "b")))
    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert (message["first"], message["last"]) == (result.first, result.last)
    assert len(message["bodies"]) == 2
    assert await db(log.read)(session.pk, 0, 10) == [(seq, body.encode()) for seq, body in
                                                     zip(result.seqs, message["bodies"], strict=True)]  # fmt: skip


async def test_one_commit_over_several_sessions_notifies_each_sessions_subscribers(alice):
    """A commit that wrote to three sessions tells each session's group its own entries (on
    Redis, the three notifications go out in one pipelined round trip)."""
    layer = get_channel_layer()
    sessions = [await db(Session.objects.create)(name=f"n{i}", owner=alice) for i in range(3)]
    channels = []
    for s in sessions:
        channels.append(await layer.new_channel())
        await layer.group_add(log.group_name(s.pk), channels[-1])
    before = log.committer().transactions
    results = await asyncio.gather(
        *(log.append(log.AppendRequest(s.pk, items(f"x{s.pk}"))) for s in sessions)
    )
    assert log.committer().transactions - before == 1
    for s, channel, result in zip(sessions, channels, results, strict=True):
        message = await asyncio.wait_for(layer.receive(channel), 5)
        assert (message["session"], message["first"], message["last"]) == (
            s.pk,
            result.first,
            result.last,
        )
        assert f"x{s.pk}" in message["bodies"][0]


def test_a_stale_instance_saved_elsewhere_cannot_move_offsets_back(alice, session):
    stale = Session.objects.get(pk=session.pk)
    log.append_sync(log.AppendRequest(session.pk, items("a", "b")))
    stale.title = "Renamed"
    stale.save()
    session.refresh_from_db()
    assert (session.title, session.head) == ("Renamed", 2)
    assert log.append_sync(log.AppendRequest(session.pk, items("c"))).first == 3


async def test_a_read_stops_at_its_byte_budget_but_always_makes_progress(alice, session):
    sizes = [100, 3000, 50, 50, 5000, 10]
    bodies = [f'{{"type":"CUSTOM","data":{{"name":"{"x" * n}"}}}}' for n in sizes]
    await log.append(log.AppendRequest(session.pk, [log.Item(b, "CUSTOM") for b in bodies]))
    read = db(log.read)
    # the entry that reaches the budget is the last one read
    assert [seq for seq, _ in await read(session.pk, 0, 100, 3000)] == [1, 2]
    assert [seq for seq, _ in await read(session.pk, 2, 100, 3000)] == [3, 4, 5]
    assert [seq for seq, _ in await read(session.pk, 4, 100, 10)] == [5]  # larger than budget
    assert [seq for seq, _ in await read(session.pk, 0, 3, 10**6)] == [1, 2, 3]  # count limit
    whole = await read(session.pk, 0, 100)
    assert [body.decode() for _, body in whole] == bodies


def run_item(kind, run, **data):
    body = f'{{"type":"{kind}","run":"{run}","data":{{}}}}'
    return log.Item(body, kind, run, data=data)


async def test_one_batch_of_producers_and_runs_over_several_sessions_lands_each_append_once(
    alice,
):
    """Several sessions' producer appends to their runs committed together (the commit reads
    the batch's sessions, producers and runs with one statement each): a retry in the same
    batch is a duplicate with the original's offsets, the runs end, and an append to an ended
    run is refused."""
    from sessions_app.domain.errors import RunEnded
    from sessions_app.models import Run

    sessions = [await db(Session.objects.create)(name=f"b{i}", owner=alice) for i in range(3)]

    def claim(session, seq):
        return ProducerClaim(f"agent-{session.pk}", 0, seq)

    await asyncio.gather(*(
        log.append(log.AppendRequest(s.pk, [run_item("RUN_STARTED", "r1")], claim(s, 0)))
        for s in sessions
    ))  # fmt: skip
    text = [run_item("TEXT_MESSAGE_CONTENT", "r1")]
    requests = []
    for s in sessions:
        requests += [
            log.AppendRequest(s.pk, text, claim(s, 1)),
            log.AppendRequest(s.pk, text, claim(s, 1)),  # the retry, in the same batch
            log.AppendRequest(s.pk, [run_item("RUN_FINISHED", "r1")], claim(s, 2)),
        ]
    before = log.committer().transactions
    results = await asyncio.gather(*(log.append(r) for r in requests))
    assert log.committer().transactions - before == 1
    for i in range(3):
        first, retry, finish = results[3 * i : 3 * i + 3]
        assert (first.seqs, first.duplicate) == (range(2, 3), False)
        assert (retry.seqs, retry.duplicate) == (range(2, 3), True)
        assert (finish.seqs, finish.duplicate) == (range(3, 4), False)
    for s in sessions:
        assert await db(Entry.objects.filter(session=s).count)() == 3
        stored = await db(Session.objects.get)(pk=s.pk)
        assert stored.head == 3  # the batch's heads, written together
        # The batch's producer states, written together: a late retry of the last append is
        # still its duplicate, with its offsets.
        again = await log.append(
            log.AppendRequest(s.pk, [run_item("RUN_FINISHED", "r1")], claim(s, 2))
        )
        assert (again.seqs, again.duplicate) == (range(3, 4), True)
        run = await db(Run.objects.get)(session=s, run_id="r1")
        assert run.status == "finished"
        with pytest.raises(RunEnded):
            await log.append(log.AppendRequest(s.pk, text, claim(s, 3)))


async def test_an_append_to_a_run_is_a_sign_of_life_of_its_agent(alice, session):
    """Streaming into a run renews its heartbeat (at most once a second), so the watchdog
    does not take a run whose agent is writing for a dead one."""
    from datetime import timedelta

    from django.utils import timezone

    from sessions_app.models import Run

    await log.append(log.AppendRequest(session.pk, [run_item("RUN_STARTED", "r1")]))
    old = timezone.now() - timedelta(minutes=5)
    await db(Run.objects.filter(session=session, run_id="r1").update)(heartbeat_at=old)
    await log.append(log.AppendRequest(session.pk, [run_item("TEXT_MESSAGE_CONTENT", "r1")]))
    run = await db(Run.objects.get)(session=session, run_id="r1")
    assert run.heartbeat_at > old + timedelta(minutes=4)
    stale = await db(Run.objects.filter(heartbeat_at__lt=old + timedelta(minutes=1)).count)()
    assert stale == 0  # stored in the column's own form: queries compare it right


async def test_a_large_batch_over_several_sessions_lands_once_with_its_producers(alice):
    """A batch too large for the one-statement write (over 20 entries: heads, producers and
    COPY apart) stores every session's head and producer state: a retry is a duplicate."""
    sessions = [await db(Session.objects.create)(name=f"L{i}", owner=alice) for i in range(3)]

    def append(s, seq):
        claim = ProducerClaim(f"bulk-{s.pk}", 0, seq)
        return log.append(log.AppendRequest(s.pk, items(*"abcdefghij"), claim))

    await asyncio.gather(*(append(s, 0) for s in sessions))  # the producers' rows exist
    before = log.committer().transactions
    results = await asyncio.gather(*(append(s, 1) for s in sessions))
    assert log.committer().transactions - before == 1
    assert [r.seqs for r in results] == [range(11, 21)] * 3
    for s in sessions:
        assert (await db(Session.objects.get)(pk=s.pk)).head == 20
        again = await append(s, 1)
        assert (again.seqs, again.duplicate) == (range(11, 21), True)
