"""Claims of several turns at once: each turn gets its own session's conversation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions_app import dispatch, log, services
from sessions_app.access import Actor, get_session
from sessions_app.domain import control
from sessions_app.domain.errors import NotFound
from sessions_app.keys import create_key
from sessions_app.models import Entry, Session, Turn

pytestmark = pytest.mark.django_db(transaction=True)


def ask(session: Session, text: str) -> None:
    _, events = control.user_message(text)
    log.append_sync(services.request(session.pk, events))


def chat(owner, name: str) -> Session:
    return Session.objects.create(name=name, owner=owner, metadata={"turns": {"agent": "a"}})


def test_one_claim_of_many_turns_gives_each_its_own_conversation_up_to_its_message(alice):
    first, second = chat(alice, "one"), chat(alice, "two")
    ask(first, "hello one")
    ask(second, "hello two")
    ask(second, "and then two")  # queued behind the first turn of "two"
    ask(first, "more for one")
    taken = dispatch.claim(Actor(alice), ["a"], "w1", 10)
    got = {t.session: (t.text, [m["content"] for m in t.messages]) for t in taken}
    assert got == {"one": ("hello one", ["hello one"]), "two": ("hello two", ["hello two"])}


def test_the_conversations_of_a_claim_are_read_in_a_fixed_number_of_queries(alice):
    for i in range(6):
        ask(chat(alice, f"s{i}"), f"question {i}")
    with CaptureQueriesContext(connection) as queries:
        taken = dispatch.claim(Actor(alice), ["a"], "w1", 10)
    assert sorted(t.text for t in taken) == [f"question {i}" for i in range(6)]
    assert len(queries) <= 8  # not two per turn


def test_fold_sessions_equals_folding_each_session(alice):
    sessions = [chat(alice, f"f{i}") for i in range(3)]
    for i, session in enumerate(sessions):
        for j in range(i + 1):
            ask(session, f"{i}.{j}")
    folded = log.fold_sessions([s.pk for s in sessions] + [10**9])
    assert set(folded) == {s.pk for s in sessions}
    for session in sessions:
        alone = log.fold_session(session.pk)
        assert folded[session.pk].as_dict() == alone.as_dict()
        assert folded[session.pk].seq == alone.seq


def test_a_worker_key_reaches_a_session_only_while_it_holds_a_turn_there(alice, make_user):
    robot = make_user("robot")
    key, _ = create_key(robot, "workers", agents="a")
    worker = Actor(robot, agents=frozenset({"a"}), key=key.pk)
    held = chat(alice, "held")
    ask(held, "hi")
    ask(chat(alice, "other"), "hi")
    taken = dispatch.claim(worker, ["a"], "w1", 1)
    assert [t.session for t in taken] == ["held"]
    assert get_session(worker, "held").pk == held.pk
    with pytest.raises(NotFound):
        get_session(worker, "other")  # its turn is not this key's
    Session.objects.filter(pk=held.pk).update(deleted=True)
    with pytest.raises(NotFound):
        get_session(worker, "held")


def lapse(session: Session) -> None:
    """The session's claimed turn's worker let its lease run out."""
    from datetime import timedelta

    from django.utils import timezone

    past = timezone.now() - timedelta(seconds=1)
    Turn.objects.filter(session=session, state="claimed").update(lease_until=past)


def test_a_lapsed_claim_is_taken_again_as_the_next_attempt_and_the_old_worker_is_fenced(alice):
    held = chat(alice, "lapse")
    ask(held, "hi")
    me = Actor(alice)
    first = dispatch.claim(me, ["a"], "w1", 5)
    assert [t.turn.attempts for t in first] == [1]
    assert dispatch.claim(me, ["a"], "w2", 5) == []  # held under a live lease
    lapse(held)
    second = dispatch.claim(me, ["a"], "w2", 5)
    assert [(t.turn.pk, t.turn.attempts, t.turn.run_id) for t in second] == [
        (first[0].turn.pk, 2, f"turn-{first[0].turn.pk}-2")
    ]
    assert dispatch.renew(me, "w1", [first[0].turn.pk]) == []  # w1 no longer holds it
    assert dispatch.renew(me, "w2", [first[0].turn.pk]) == [first[0].turn.pk]


@override_settings(SESSIONS_APP={"TURN_MAX_ATTEMPTS": 2})
def test_a_turn_whose_claims_all_lapsed_fails_and_the_session_s_next_turn_is_offered(alice):
    held = chat(alice, "doomed")
    ask(held, "first")
    ask(held, "second")
    me = Actor(alice)
    for _ in range(2):
        assert [t.text for t in dispatch.claim(me, ["a"], "w", 5)] == ["first"]
        lapse(held)
    assert dispatch.claim(me, ["a"], "w", 5) == []  # this claim fails the lost turn
    assert [t.state for t in Turn.objects.filter(session=held).order_by("id")] == [
        "failed",
        "queued",
    ]
    assert [t.text for t in dispatch.claim(me, ["a"], "w", 5)] == ["second"]


def test_a_user_s_key_claims_turns_of_its_own_sessions_and_of_its_scope_only(alice, bob):
    ask(chat(alice, "mine"), "hi")
    ask(chat(alice, "also-mine"), "hi")
    ask(chat(bob, "bobs"), "hi")
    assert dispatch.claim(Actor(alice, frozenset()), ["a"], "w", 5) == []  # emptied scope
    scoped = dispatch.claim(Actor(alice, frozenset({"mine", "bobs"})), ["a"], "w", 5)
    assert [t.session for t in scoped] == ["mine"]
    assert [t.session for t in dispatch.claim(Actor(alice), ["a"], "w", 5)] == ["also-mine"]
    assert [t.session for t in dispatch.claim(Actor(bob), ["a", "b"], "w", 5)] == ["bobs"]


def test_claims_at_once_from_many_threads_never_take_a_turn_twice(alice):
    for i in range(40):
        ask(chat(alice, f"race{i}"), "hi")
    me = Actor(alice)

    def worker(name: str) -> list[int]:
        try:
            got: list[int] = []
            while taken := dispatch.claim(me, ["a"], name, 3):
                got += [t.turn.pk for t in taken]
            return got
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(worker, [f"w{i}" for i in range(4)]))
    every = [pk for got in claims for pk in got]
    assert len(every) == len(set(every)) == 40
    assert Turn.objects.filter(state="claimed", attempts=1).count() == 40


def test_a_turn_left_in_a_byte_stream_fails_alone_and_the_claim_goes_on(alice):
    # Before byte streams were kept from the event doors, a user message sent to one made a
    # turn there; folding its bytes as events failed the whole claim, and every other turn the
    # claim had taken stayed claimed with no worker told.
    legacy, fine = chat(alice, "bytes"), chat(alice, "fine")
    ask(legacy, "hello bytes")
    head = Session.objects.get(pk=legacy.pk).head
    Entry.objects.create(
        session=legacy,
        seq=head + 1,
        type="",
        run="",
        body=b"\xff\xfe raw",
        created_at=timezone.now(),
    )
    Session.objects.filter(pk=legacy.pk).update(
        head=head + 1, content_type="application/octet-stream"
    )
    ask(fine, "hello fine")
    taken = dispatch.claim(Actor(alice), ["a"], "w1", 10)
    assert [(t.session, t.text) for t in taken] == [("fine", "hello fine")]
    stuck = Turn.objects.get(session=legacy)
    assert stuck.state == "failed" and "byte stream" in stuck.reason
    assert dispatch.claim(Actor(alice), ["a"], "w1", 10) == []  # not offered again


def answer(turn: dispatch.Claimed, end: str = "RUN_FINISHED", **data: str) -> list[dict]:
    run = turn.turn.run_id
    return [
        {"type": "RUN_STARTED", "run": run, "data": {"turn": turn.turn.pk}},
        {"type": "TEXT_MESSAGE_START", "run": run, "message": f"m{run}",
         "data": {"role": "assistant"}},
        {"type": "TEXT_MESSAGE_CONTENT", "run": run, "message": f"m{run}", "data": {"delta": "ok"}},
        {"type": "TEXT_MESSAGE_END", "run": run, "message": f"m{run}"},
        {"type": end, "run": run, "data": data},
    ]  # fmt: skip


@override_settings(SESSIONS_APP={"TURN_MAX_ATTEMPTS": 2})
def test_answers_committed_together_each_move_their_own_turn_on(alice):
    """Several workers' answers in one transaction (the group commit): each turn ends as its
    own run did, and a message after an answer in the same batch sees that turn ended."""
    from sessions_app.log.commit import commit

    sessions = [
        Session.objects.create(
            name=f"g{i}", owner=alice, metadata={"turns": {"agent": "a", "on_busy": "reject"}}
        )
        for i in range(5)
    ]
    for session in sessions:
        ask(session, "question")
    taken = {t.session: t for t in dispatch.claim(Actor(alice), ["a"], "w1", 10)}
    assert sorted(taken) == ["g0", "g1", "g2", "g3", "g4"]
    _, follow_up = control.user_message("and another")
    requests = [
        services.request(sessions[0].pk, answer(taken["g0"])),
        services.request(sessions[1].pk, answer(taken["g1"])),
        services.request(
            sessions[2].pk, answer(taken["g2"], "RUN_ERROR", code="agent_lost", message="lost")
        ),
        services.request(sessions[4].pk, answer(taken["g4"], "RUN_ERROR", message="boom")),
        services.request(sessions[1].pk, follow_up),  # after g1's answer, in the same batch
        services.request(sessions[3].pk, follow_up),  # g3's turn is still open: refused
    ]
    resolved, results = commit(requests)
    assert [type(r).__name__ for r in results[:5]] == ["AppendResult"] * 5
    assert getattr(results[5], "code", None) == "busy"
    states = {
        name: list(Turn.objects.filter(session__name=name).order_by("id")
                   .values_list("state", flat=True))
        for name in ("g0", "g1", "g2", "g3", "g4")
    }  # fmt: skip
    assert states == {
        "g0": ["done"],
        "g1": ["done", "queued"],  # the follow-up's turn, made in the same transaction
        "g2": ["queued"],  # its agent was lost, attempt 1 of 2: offered again
        "g3": ["claimed"],
        "g4": ["failed"],
    }
    retried = Turn.objects.get(session__name="g2")
    assert (retried.worker, retried.ended_at, retried.attempts) == ("", None, 1)
    failed = Turn.objects.get(session__name="g4")
    assert (failed.reason, failed.worker) == ("boom", "w1") and failed.ended_at is not None
    assert Turn.objects.get(session__name="g0").ended_at is not None
    # Each answer and the new message wake the workers (a turn may be claimed now).
    assert [sorted(r.turn_wake) for r in resolved[:5] if r is not None] == [["a"]] * 5


def test_a_sub_run_started_in_its_parent_s_append_is_stored_under_it(alice):
    session = Session.objects.create(name="sub", owner=alice)
    events = [
        {"type": "RUN_STARTED", "run": "parent"},
        {"type": "RUN_STARTED", "run": "child", "data": {"parentRunId": "parent"}},
        {"type": "RUN_STARTED", "run": "grandchild", "data": {"parentRunId": "child"}},
    ]
    log.append_sync(services.request(session.pk, events))
    from sessions_app.models import Run

    parents = dict(Run.objects.filter(session=session).values_list("run_id", "parent__run_id"))
    assert parents == {"parent": None, "child": "parent", "grandchild": "child"}
