"""The export reads sessions in chunks bounded by a number of entries: a session longer than
the bound is read through a cursor, a few thousand rows at a time; either way every session
is exported once, whole, in order."""

from __future__ import annotations

import io
import json
import threading

import pytest
from django.core.management import call_command

from sessions_app import export
from tests.sessions_app.test_export import chat

pytestmark = pytest.mark.django_db(transaction=True)


def exported(tmp_path, name):
    call_command("sessions", "export-dataset", "--out", str(tmp_path / f"{name}.jsonl"),
                 "--split", "1,0,0", stderr=io.StringIO())  # fmt: skip
    return [json.loads(line) for line in (tmp_path / f"{name}.train.jsonl").read_text().splitlines()]  # fmt: skip


def test_sessions_longer_than_a_chunks_budget_are_exported_whole(alice, tmp_path, monkeypatch):
    for index in range(5):
        chat(alice, f"chat-{index}", f"Question {index}?", f"Answer {index}. " * (index + 1))
    whole = exported(tmp_path, "whole")
    assert [line["messages"][0]["content"] for line in whole] == [
        f"Question {index}?" for index in range(5)
    ]
    monkeypatch.setattr(export, "ENTRY_BUDGET", 5)  # each session (8 entries) is over it
    assert exported(tmp_path, "small") == whole
    monkeypatch.setattr(export, "ENTRY_BUDGET", 20)  # two sessions a chunk, then a third
    assert exported(tmp_path, "pairs") == whole


def failing_redact(text):
    if "Question 2" in text:
        raise ValueError("the redaction hook failed")
    return text, {}


def test_an_export_stopped_by_an_error_leaves_no_reader_thread(alice, tmp_path, monkeypatch):
    for index in range(5):
        chat(alice, f"chat-{index}", f"Question {index}?", f"Answer {index}.")
    monkeypatch.setattr(export, "ENTRY_BUDGET", 5)  # a chunk a session: the reader is ahead
    with pytest.raises(ValueError, match="the redaction hook failed"):
        call_command("sessions", "export-dataset", "--out", str(tmp_path / "data.jsonl"),
                     "--redact", f"{__name__}.failing_redact", stderr=io.StringIO())  # fmt: skip
    assert "export-fetch" not in [thread.name for thread in threading.enumerate()]
