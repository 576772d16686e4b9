"""The batched access check (``access.sessions_for``, what the subscribes arriving together on
a worker share) gives exactly what ``access.get_session`` gives, case by case."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from sessions_app import dispatch, log, services
from sessions_app.access import Actor, get_session, sessions_for
from sessions_app.domain import control
from sessions_app.domain.errors import NotFound
from sessions_app.keys import create_key
from sessions_app.models import Session
from tests.sessions_app.conftest import add_member

pytestmark = pytest.mark.django_db(transaction=True)


def one_by_one(actor: Actor, name: object) -> int | str:
    try:
        return get_session(actor, name).pk
    except NotFound:
        return "not found"


def batched(asked: list[tuple[Actor, object]]) -> list[int | str]:
    return [a if isinstance(a, int) else "not found" for a in sessions_for(asked)]


def test_the_batched_check_gives_what_get_session_gives(alice, bob, make_user):
    carol, robot = make_user("carol"), make_user("robot")
    chat = Session.objects.create(name="chat", owner=alice)
    add_member(chat, bob)
    gone = Session.objects.create(name="gone", owner=alice, deleted=True)
    add_member(gone, bob)
    held = Session.objects.create(name="held", owner=alice, metadata={"turns": {"agent": "a"}})
    other = Session.objects.create(name="other", owner=alice, metadata={"turns": {"agent": "a"}})
    for session in (held, other):
        _, events = control.user_message("hi")
        log.append_sync(services.request(session.pk, events))
    key, _ = create_key(robot, "workers", agents="a")
    worker = Actor(robot, agents=frozenset({"a"}), key=key.pk)
    assert [t.session for t in dispatch.claim(worker, ["a"], "w1", 1)] == ["held"]
    cases = {
        "owner": (Actor(alice), "chat", chat.pk),
        "member": (Actor(bob), "chat", chat.pk),
        "non-member": (Actor(carol), "chat", "not found"),
        "out-of-scope key": (Actor(alice, frozenset({"held"})), "chat", "not found"),
        "in-scope key": (Actor(bob, frozenset({"chat"})), "chat", chat.pk),
        "deleted session, owner": (Actor(alice), "gone", "not found"),
        "deleted session, member": (Actor(bob), "gone", "not found"),
        "agent key holding a claimed turn": (worker, "held", held.pk),
        "agent key without a turn there": (worker, "other", "not found"),
        "no such session": (Actor(alice), "nope", "not found"),
        "anonymous": (Actor(AnonymousUser()), "chat", "not found"),
        "empty name": (Actor(alice), "", "not found"),
        "name too long": (Actor(alice), "c" * 256, "not found"),
        "NUL in the name": (Actor(alice), "ch\x00at", "not found"),
        "not a string": (Actor(alice), 7, "not found"),
        "a list": (Actor(alice), ["chat"], "not found"),
    }
    asked = [(actor, name) for actor, name, _ in cases.values()]
    expected = {case: want for case, (_, _, want) in cases.items()}
    assert dict(zip(cases, [one_by_one(a, n) for a, n in asked], strict=True)) == expected
    assert dict(zip(cases, batched(asked), strict=True)) == expected
    # The claim ending takes the session away from the key in both.
    Session.objects.filter(pk=held.pk).update(deleted=True)
    assert one_by_one(worker, "held") == batched([(worker, "held")])[0] == "not found"


def test_each_asker_gets_a_notfound_of_its_own(alice, bob):
    Session.objects.create(name="chat", owner=alice)
    found = sessions_for([(Actor(bob), "chat"), (Actor(alice), "chat"), (Actor(bob), "chat")])
    assert isinstance(found[0], NotFound) and isinstance(found[2], NotFound)
    assert found[0] is not found[2]
    assert found[1] == Session.objects.get(name="chat").pk
