"""``sessions export-dataset``: the sessions' conversations as chat JSONL, split by
conversation, filtered by rating, with corrections, redaction and a dataset card."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from sessions_app import feedback, log, services
from sessions_app.models import Session

pytestmark = pytest.mark.django_db(transaction=True)


def chat(owner, name, question, answer, *, run_ends="RUN_FINISHED", agent="helper"):
    session = Session.objects.create(name=name, owner=owner)
    events = [
        {"type": "TEXT_MESSAGE_START", "message": "u1", "data": {"role": "user"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": "u1", "data": {"delta": question}},
        {"type": "TEXT_MESSAGE_END", "message": "u1"},
        {"type": "RUN_STARTED", "run": "r1", "agent": agent},
        {"type": "TEXT_MESSAGE_START", "message": "a1", "run": "r1",
         "data": {"role": "assistant"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": "a1", "run": "r1", "data": {"delta": answer}},
        {"type": "TEXT_MESSAGE_END", "message": "a1", "run": "r1"},
    ]  # fmt: skip
    if run_ends == "RUN_FINISHED":
        events.append({"type": "RUN_FINISHED", "run": "r1"})
    else:
        events.append({"type": "RUN_ERROR", "run": "r1", "data": {"message": "boom"}})
    log.append_sync(services.request(session.pk, events))
    return session


def rate(session, user, rating, correction=None):
    log.append_sync(feedback.request(user, session.pk, "a1", rating, None, correction))


def export(tmp_path, *args):
    out = tmp_path / "data.jsonl"
    card = tmp_path / "card.json"
    call_command("sessions", "export-dataset", "--out", str(out), "--card", str(card), *args,
                 stderr=io.StringIO())  # fmt: skip
    lines = {
        split: [json.loads(line) for line in (tmp_path / f"data.{split}.jsonl").read_text().splitlines()]
        for split in ("train", "dev", "test")
    }  # fmt: skip
    return lines, json.loads(card.read_text())


def test_export_is_chat_jsonl_split_by_conversation_with_a_card(alice, tmp_path):
    good = chat(alice, "good", "Where is Paris? Mail me at ana@example.com", "In France.")
    bad = chat(alice, "bad", "2+2?", "5")
    chat(alice, "twin", "Where is Paris? Mail me at ana@example.com", "In France.")  # a duplicate
    chat(alice, "broken", "Hi?", "Hel", run_ends="RUN_ERROR")
    rate(good, "alice", "up")
    rate(bad, "alice", "down", correction="4")
    lines, card = export(tmp_path, "--split", "0.5,0.5,0", "--seed", "7")
    everything = [c for split in lines.values() for c in split]
    assert {"messages": [{"role": "user", "content": "Where is Paris? Mail me at [EMAIL]"},
                         {"role": "assistant", "content": "In France."}]} in everything  # fmt: skip
    assert {"messages": [{"role": "user", "content": "2+2?"},
                         {"role": "assistant", "content": "5"}]} in everything  # fmt: skip
    assert len(everything) == 3  # the twin dropped; the failed run's answer kept (no filter)
    assert lines["test"] == []
    assert card["conversations"] == 3 and card["duplicates_dropped"] == 1
    assert card["splits"] == {name: len(lines[name]) for name in ("train", "dev", "test")}
    assert card["ratings"] == {"down": 1, "unrated": 1, "up": 1}
    assert card["redactions"] == {"email": 2}  # the twin was redacted before it was dropped
    again, _ = export(tmp_path, "--split", "0.5,0.5,0", "--seed", "7")
    assert again == lines  # the split is fixed by the seed and the session name


def test_filters_and_corrections(alice, tmp_path):
    good = chat(alice, "good", "Capital of Italy?", "Rome.")
    bad = chat(alice, "bad", "2+2?", "5")
    chat(alice, "plain", "Hello?", "Hi.")
    chat(alice, "broken", "Hi?", "Hel", run_ends="RUN_ERROR")
    chat(alice, "other", "Who?", "Me.", agent="other")
    rate(good, "alice", "up")
    rate(bad, "alice", "down", correction="4")
    contents = lambda lines: sorted(  # noqa: E731
        c["messages"][-1]["content"] for split in lines.values() for c in split
    )
    lines, card = export(tmp_path, "--min-rating", "up", "--corrections")
    assert contents(lines) == ["4", "Rome."] and card["ratings"] == {"corrected": 1, "up": 1}
    lines, _ = export(tmp_path, "--min-rating", "none")
    assert contents(lines) == ["Hel", "Hi.", "Me.", "Rome."]
    lines, card = export(tmp_path, "--finished-only", "--agent", "helper")
    assert contents(lines) == ["5", "Hi.", "Rome."] and card["sessions_left_out"] == 1


def test_markdown_card_and_stdout(alice, tmp_path):
    chat(alice, "one", "Q?", "A.")
    out = io.StringIO()
    card = tmp_path / "card.md"
    call_command("sessions", "export-dataset", "--card", str(card), stdout=out)
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["messages"][1] == {"role": "assistant", "content": "A."}
    assert json.loads(line)["split"] in ("train", "dev", "test")
    assert card.read_text().startswith("# Dataset card") and "Conversations: 1" in card.read_text()


def test_an_anonymous_stream_of_any_json_does_not_stop_the_export(alice, tmp_path):
    """Anyone may create a JSON stream of any JSON under the anonymous prefix; its messages
    (``5``, ``"x"``, ``[1]``) are no events, and folding them stopped the whole export."""
    chat(alice, "good", "Where is Paris?", "In France.")
    anyone = Session.objects.create(name="public/any", owner=None)
    items = [log.Item(json.dumps(m)) for m in (5, "x", [1], {"type": "CUSTOM"})]
    log.append_sync(log.AppendRequest(anyone.pk, items))
    lines, card = export(tmp_path)
    assert sum(len(rows) for rows in lines.values()) == 1
