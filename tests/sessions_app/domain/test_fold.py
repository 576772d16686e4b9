import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions_app.domain.fold import SessionState, fold

pytestmark = pytest.mark.engine_independent


def ev(type_, **fields):
    return {"type": type_, **fields}


def numbered(events):
    return list(enumerate(events, start=1))


def test_a_streamed_answer_folds_into_one_complete_message():
    events = [
        ev("RUN_STARTED", run="r1", agent="writer"),
        ev("TEXT_MESSAGE_START", run="r1", message="m1", data={"role": "assistant"}),
        *[ev("TEXT_MESSAGE_CONTENT", run="r1", message="m1", data={"delta": d}) for d in "Hello!"],
        ev("TEXT_MESSAGE_END", run="r1", message="m1"),
        ev("RUN_FINISHED", run="r1", data={"outcome": "success"}),
    ]
    state = fold(numbered(events)).as_dict()
    assert state["messages"] == [
        {
            "id": "m1",
            "role": "assistant",
            "run": "r1",
            "agent": None,
            "status": "complete",
            "text": "Hello!",
        }
    ]
    assert state["runs"][0]["status"] == "finished"


def test_a_cancelled_run_keeps_its_partial_message_marked_cancelled():
    events = [
        ev("RUN_STARTED", run="r1"),
        ev("TEXT_MESSAGE_START", run="r1", message="m1"),
        ev("TEXT_MESSAGE_CONTENT", run="r1", message="m1", data={"delta": "Once upon"}),
        ev("CANCEL", run="r1"),
        ev("RUN_FINISHED", run="r1", data={"outcome": "cancelled"}),
        ev("TEXT_MESSAGE_CONTENT", run="r1", message="m1", data={"delta": " a time"}),
    ]
    state = fold(numbered(events))
    assert state.messages["m1"].status == "cancelled"
    assert state.messages["m1"].text == "Once upon"
    assert state.runs["r1"].status == "cancelled"


def test_a_failed_run_marks_its_unfinished_message_failed():
    events = [
        ev("RUN_STARTED", run="r1"),
        ev("TEXT_MESSAGE_CONTENT", run="r1", message="m1", data={"delta": "Par"}),
        ev("RUN_ERROR", run="r1", data={"message": "model overloaded"}),
    ]
    state = fold(numbered(events))
    assert (state.messages["m1"].status, state.runs["r1"].status) == ("failed", "failed")
    assert state.runs["r1"].error == "model overloaded"


def test_a_finished_run_cannot_be_restarted_or_cancelled():
    events = [
        ev("RUN_STARTED", run="r1"),
        ev("RUN_FINISHED", run="r1"),
        ev("CANCEL", run="r1"),
        ev("RUN_ERROR", run="r1", data={"message": "late"}),
    ]
    assert fold(numbered(events)).runs["r1"].status == "finished"


def test_sub_agent_runs_record_their_parent():
    events = [
        ev("RUN_STARTED", run="boss"),
        ev("RUN_STARTED", run="helper", agent="researcher", data={"parentRunId": "boss"}),
    ]
    runs = fold(numbered(events)).runs
    assert runs["helper"].parent == "boss" and runs["helper"].agent == "researcher"


def test_state_snapshot_and_json_patch_deltas():
    events = [
        ev("STATE_SNAPSHOT", data={"snapshot": {"todo": ["a"], "done": 0}}),
        ev("STATE_DELTA", data={"delta": [{"op": "add", "path": "/todo/-", "value": "b"},
                                          {"op": "replace", "path": "/done", "value": 1}]}),
        ev("STATE_DELTA", data={"delta": [{"op": "remove", "path": "/missing"}]}),  # skipped
    ]  # fmt: skip
    assert fold(numbered(events)).state == {"todo": ["a", "b"], "done": 1}


def test_malformed_events_are_skipped_not_fatal():
    events = [
        {"type": "TEXT_MESSAGE_CONTENT"},
        {"no": "type"},
        ev("RUN_FINISHED"),
        ev("STATE_DELTA"),
    ]
    state = fold(numbered(events))
    assert state.seq == 4 and state.messages == {}


# --- properties ----------------------------------------------------------------------------

ids = st.sampled_from(["r1", "r2", "r3"])
mids = st.sampled_from(["m1", "m2", "m3"])
any_event = st.one_of(
    st.builds(lambda r: ev("RUN_STARTED", run=r), ids),
    st.builds(lambda r, o: ev("RUN_FINISHED", run=r, data={"outcome": o}), ids,
              st.sampled_from(["success", "cancelled"])),
    st.builds(lambda r: ev("RUN_ERROR", run=r, data={"message": "x"}), ids),
    st.builds(lambda r: ev("CANCEL", run=r), ids),
    st.builds(lambda r, m: ev("TEXT_MESSAGE_START", run=r, message=m), ids, mids),
    st.builds(lambda r, m, d: ev("TEXT_MESSAGE_CONTENT", run=r, message=m, data={"delta": d}),
              ids, mids, st.text(max_size=5)),
    st.builds(lambda m: ev("TEXT_MESSAGE_END", message=m), mids),
    st.builds(lambda s: ev("STATE_SNAPSHOT", data={"snapshot": s}), st.dictionaries(st.text(max_size=3), st.integers())),
)  # fmt: skip


@given(st.lists(any_event, max_size=60), st.integers(min_value=0, max_value=60))
@settings(max_examples=300)
def test_folding_from_a_stored_snapshot_equals_folding_everything(events, cut):
    # What compaction and retention rely on: snapshot + the rest == the whole fold.
    entries = numbered(events)
    cut = min(cut, len(entries))
    head = fold(entries[:cut])
    stored = json.loads(json.dumps(head.as_dict()))
    resumed = fold(entries[cut:], SessionState.from_dict(stored, head.seq))
    assert resumed.as_dict() == fold(entries).as_dict()


@given(st.lists(st.text(max_size=4), min_size=1, max_size=50))
def test_message_text_is_the_concatenation_of_its_deltas_in_order(deltas):
    events = [ev("TEXT_MESSAGE_CONTENT", message="m", data={"delta": d}) for d in deltas]
    assert fold(numbered(events)).messages["m"].text == "".join(deltas)


@given(st.lists(any_event, max_size=80))
def test_a_final_run_status_never_changes_again(events):
    finals = {}
    state = SessionState()
    for seq, event in numbered(events):
        fold([(seq, event)], state)
        for run in state.runs.values():
            if run.status.is_final:
                assert finals.setdefault(run.id, run.status) == run.status
