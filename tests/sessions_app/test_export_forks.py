"""A fork (Durable Streams' ``Stream-Forked-From``: "edit and regenerate") shares its
source's entries up to the fork point; its exported conversation holds them, so the
inherited question and answer come before the fork's own."""

from __future__ import annotations

import pytest

from sessions_app import log, services
from sessions_app.models import Session
from tests.sessions_app.test_export import chat, export, rate

pytestmark = pytest.mark.django_db(transaction=True)


def turn(user, question, run, answer):
    return [
        {"type": "TEXT_MESSAGE_START", "message": user, "data": {"role": "user"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": user, "data": {"delta": question}},
        {"type": "TEXT_MESSAGE_END", "message": user},
        {"type": "RUN_STARTED", "run": run, "agent": "helper"},
        {"type": "TEXT_MESSAGE_START", "message": f"a-{run}", "run": run,
         "data": {"role": "assistant"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": f"a-{run}", "run": run,
         "data": {"delta": answer}},
        {"type": "TEXT_MESSAGE_END", "message": f"a-{run}", "run": run},
        {"type": "RUN_FINISHED", "run": run},
    ]  # fmt: skip


def fork(source, name, at, events):
    """A fork as the stream service makes one: entries 1..at are the source's."""
    made = Session.objects.create(
        name=name, owner=source.owner, forked_from=source, fork_seq=at, head=at
    )
    log.append_sync(services.request(made.pk, events))
    return made


def test_a_fork_exports_the_history_it_inherits(alice, tmp_path):
    source = chat(alice, "source", "Capital of Italy?", "Rome.")  # entries 1..8
    first = fork(source, "fork", 8, turn("u2", "And of Spain?", "r2", "Madrid."))
    # a fork of the fork inside its own part: after the second question (entry 11)
    fork(first, "fork-of-fork", 11, turn("u3", "", "r3", "Madrid, on the Manzanares."))
    rate(source, "alice", "down", correction="Rome, in Lazio.")  # after the fork point
    lines, card = export(tmp_path, "--split", "1,0,0", "--corrections")
    by_answer = {c["messages"][-1]["content"]: c["messages"] for c in lines["train"]}
    assert by_answer["Rome, in Lazio."] == [
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome, in Lazio."},
    ]
    assert by_answer["Madrid."] == [
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome."},  # the source's later rating is not inherited
        {"role": "user", "content": "And of Spain?"},
        {"role": "assistant", "content": "Madrid."},
    ]
    assert by_answer["Madrid, on the Manzanares."] == [
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": "And of Spain?"},
        {"role": "assistant", "content": "Madrid, on the Manzanares."},
    ]
    assert card["conversations"] == 3 and card["ratings"] == {"corrected": 1, "unrated": 2}
