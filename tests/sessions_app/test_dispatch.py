"""Claims of several turns at once: each turn gets its own session's conversation."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions_app import dispatch, log, services
from sessions_app.access import Actor, get_session
from sessions_app.domain import control
from sessions_app.domain.errors import NotFound
from sessions_app.keys import create_key
from sessions_app.models import Session

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
