"""A fork (Durable Streams' ``Stream-Forked-From``: "edit and regenerate") shares its source's
entries up to the fork point. Every door reads it as one conversation: the REST events and
snapshot, the WebSocket replay and snapshot, the feedback door, the agent's claimed turn and
compaction see the history it inherits, then its own entries."""

from __future__ import annotations

import importlib
import json

import pytest
from channels.db import database_sync_to_async
from django.apps import apps
from django.test import Client

from sessions_app import dispatch, feedback, log, services
from sessions_app.access import Actor
from sessions_app.domain import control
from sessions_app.domain.errors import OffsetExpired
from sessions_app.domain.fold import fold
from sessions_app.domain.offsets import format_offset
from sessions_app.doors import common
from sessions_app.log import forks
from sessions_app.models import Session
from tests.sessions_app.conftest import connect
from tests.sessions_app.test_export import chat
from tests.sessions_app.test_export_forks import fork, turn

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


@pytest.fixture
def family(alice):
    """source: entries 1..8 (a question and its answer a1), then 9..16 after the forks were made;
    fork: 1..8 inherited, 9..16 its own; fork-of-fork: 1..11 inherited (up to the fork's second
    question), 12..19 its own."""
    source = chat(alice, "source", "Capital of Italy?", "Rome.")
    first = fork(source, "fork", 8, turn("u2", "And of Spain?", "r2", "Madrid."))
    grandchild = fork(first, "fork-of-fork", 11, turn("u3", "", "r3", "Madrid, on the river."))
    log.append_sync(services.request(source.pk, turn("u9", "Later in the source", "r9", "No.")))
    return source, first, grandchild


def conversation(state):
    return [(m.role, m.text) for m in state.messages.values()]


FORK = [
    ("user", "Capital of Italy?"),
    ("assistant", "Rome."),
    ("user", "And of Spain?"),
    ("assistant", "Madrid."),
]
GRANDCHILD = [*FORK[:3], ("user", ""), ("assistant", "Madrid, on the river.")]


def test_rest_events_and_snapshot_of_a_fork_hold_what_it_inherits(alice, family):
    api = Client()
    api.force_login(alice)
    page = api.get("/api/sessions/fork/events?limit=100").json()
    offsets = [int(e["offset"].split("_")[1]) for e in page["events"]]
    assert offsets == list(range(1, 17)) and page["up_to_date"]
    deltas = [e["data"]["delta"] for e in page["events"] if e["type"] == "TEXT_MESSAGE_CONTENT"]
    assert deltas == ["Capital of Italy?", "Rome.", "And of Spain?", "Madrid."]
    snapshot = api.get("/api/sessions/fork/snapshot").json()
    messages = [(m["role"], m["text"]) for m in snapshot["state"]["messages"]]
    assert messages == FORK  # not the source's later turn


def test_a_fork_of_a_fork_reads_both_ancestors_up_to_each_fork_point(family):
    _source, _first, grandchild = family
    rows = log.read(grandchild.pk, 0, 100)
    assert [seq for seq, _ in rows] == list(range(1, 20))  # 1..8, 9..11 inherited, 12..19 own
    assert conversation(log.fold_session(grandchild.pk)) == GRANDCHILD
    # a page that ends inside the inherited part, and one that starts there
    assert [seq for seq, _ in log.read(grandchild.pk, 0, 5)] == [1, 2, 3, 4, 5]
    assert [seq for seq, _ in log.read(grandchild.pk, 7, 6)] == [8, 9, 10, 11, 12, 13]


def test_a_read_bounded_by_bytes_stops_after_the_entry_that_reaches_the_bound(family):
    _source, first, _grandchild = family
    one = len(log.read(first.pk, 0, 1)[0][1])
    rows = log.read(first.pk, 0, 100, max_bytes=one + 1)
    assert [seq for seq, _ in rows] == [1, 2]


async def test_a_websocket_replay_of_a_fork_starts_at_its_first_inherited_entry(alice, family):
    async with connect(alice) as client:
        replayed, caught_up = await client.subscribe("fork")
        assert [e["offset"] for e in replayed][:1] == ["0000000000000000_0000000000000001"]
        assert len(replayed) == 16 and caught_up["offset"].endswith("0016")
        (snapshot,), _ = await client.subscribe("fork-of-fork", after="snapshot")
        texts = [(m["role"], m["text"]) for m in snapshot["state"]["messages"]]
        assert texts == GRANDCHILD


def test_an_inherited_answer_can_be_rated_in_the_fork(alice, family):
    _source, first, _grandchild = family
    log.append_sync(feedback.request("alice", first.pk, "a1", "up"))
    rated = log.fold_session(first.pk).messages["a1"]
    assert rated.feedback and rated.feedback["alice"]["rating"] == "up"
    assert "alice" not in log.fold_session(_source.pk).messages["a1"].feedback


def test_an_agent_answering_in_a_fork_is_given_the_conversation_it_inherits(alice, family):
    source, _first, _grandchild = family
    edited = Session.objects.create(name="edited", owner=alice, forked_from=source, fork_seq=8,
                                    head=8, metadata={"turns": {"agent": "a"}})  # fmt: skip
    _, events = control.user_message("And of France?")
    log.append_sync(services.request(edited.pk, events))
    (taken,) = dispatch.claim(Actor(alice), ["a"], "w1", 1)
    assert taken.session == "edited" and taken.text == "And of France?"
    assert [(m["role"], m["content"]) for m in taken.messages] == [
        ("user", "Capital of Italy?"),
        ("assistant", "Rome."),
        ("user", "And of France?"),
    ]


def test_a_source_that_forks_read_is_not_compacted_until_they_no_longer_do(alice, family):
    source, first, grandchild = family
    assert log.compact(source.pk, 16) == 0  # the fork reads 1..8
    assert log.compact(first.pk, 16) == 0  # the fork of the fork reads 9..11 of it
    assert [seq for seq, _ in log.read(grandchild.pk, 0, 100)] == list(range(1, 20))
    # compacted past its fork point, a fork's snapshot holds what it inherited
    assert log.compact(grandchild.pk, 19) == 8
    assert conversation(log.fold_session(grandchild.pk)) == GRANDCHILD
    assert log.compact(first.pk, 16) == 8
    assert conversation(log.fold_session(first.pk)) == FORK
    assert log.compact(source.pk, 16) == 16
    assert conversation(log.fold_session(source.pk))[-1] == ("assistant", "No.")
    assert conversation(log.fold_session(first.pk)) == FORK
    api = Client()
    api.force_login(alice)
    refused = api.get("/api/sessions/fork/events")
    assert refused.status_code == 410 and json.loads(refused.content)["code"] == "offset_expired"


def test_a_fork_of_a_compacted_source_reads_as_expired_below_the_source_s_tail(alice):
    source = chat(alice, "source", "Capital of Italy?", "Rome.")
    assert log.compact(source.pk, 4) == 4  # before any fork: 1..4 folded into its snapshot
    made = fork(source, "fork", 8, turn("u2", "And of Spain?", "r2", "Madrid."))
    assert log.head_and_tail(made.pk) == (16, 4)
    api = Client()
    api.force_login(alice)
    refused = api.get("/api/sessions/fork/events")
    assert refused.status_code == 410 and json.loads(refused.content)["code"] == "offset_expired"
    page = api.get("/api/sessions/fork/events?after=" + format_offset(4)).json()
    assert [e["offset"] for e in page["events"]][0] == format_offset(5)
    assert conversation(log.fold_session(made.pk)) == FORK  # from the source's snapshot
    # an AG-UI reconnect folds the fork up to where the client was
    assert conversation(common.fold_until(made.pk, 16)) == FORK
    assert conversation(common.fold_until(made.pk, 10)) == FORK[:3]
    with pytest.raises(OffsetExpired):  # below what the source's retention left
        common.fold_until(made.pk, 3)


async def test_a_websocket_resume_below_a_fork_s_inherited_tail_is_offered_the_snapshot(alice):
    source = await db(chat)(alice, "source", "Capital of Italy?", "Rome.")
    await db(log.compact)(source.pk, 4)
    await db(fork)(source, "fork", 8, turn("u2", "And of Spain?", "r2", "Madrid."))
    async with connect(alice) as client:
        _replayed, refused = await client.subscribe("fork")
        assert refused["type"] == "error" and refused["code"] == "offset_expired"
        (snapshot,), _ = await client.subscribe("fork", after="snapshot")
        assert [(m["role"], m["text"]) for m in snapshot["state"]["messages"]] == FORK


def test_a_fork_that_folds_its_inherited_history_leaves_a_checkpoint(family, monkeypatch):
    from sessions_app.log import reads

    monkeypatch.setattr(reads, "CHECKPOINT_ENTRIES", 10)  # the fork folds 8 + 8 entries
    _source, first, _grandchild = family
    assert conversation(log.fold_session(first.pk)) == FORK
    assert Session.objects.get(pk=first.pk).checkpoint_seq == 16
    assert conversation(log.fold_session(first.pk)) == FORK  # from the checkpoint


def test_the_migration_forgets_fork_checkpoints_folded_without_the_inherited_history(family):
    _source, first, _grandchild = family
    own_only = forks.start_state(None, 8, None, 0)  # how a fork's fold began before 0009
    fold(((seq, json.loads(body)) for seq, body in log.read(first.pk, 8, 100)), own_only)
    Session.objects.filter(pk=first.pk).update(checkpoint=own_only.as_dict(), checkpoint_seq=16)
    assert conversation(log.fold_session(first.pk)) == FORK[2:]  # the stale checkpoint is used
    migration = importlib.import_module("sessions_app.migrations.0009_fork_checkpoints")
    migration.forget_fork_checkpoints(apps, None)
    assert conversation(log.fold_session(first.pk)) == FORK
