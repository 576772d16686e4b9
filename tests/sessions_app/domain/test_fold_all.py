"""``apply_all`` (the export's fold of many events at once, text deltas inline) ends in the
state ``apply`` event by event ends in, whatever the log holds: deltas for unknown or
finished messages, missing or odd fields, runs that end in every way."""

from __future__ import annotations

import copy

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sessions_app.domain.fold import SessionState, apply, apply_all

pytestmark = pytest.mark.engine_independent

ids = st.sampled_from(["m1", "m1", "m1", "m2", "m2", None, 7])
runs = st.sampled_from(["r1", "r2", None])
deltas = st.fixed_dictionaries(
    {"delta": st.text(min_size=1, max_size=3)},
    optional={"role": st.sampled_from(["user", "system", "", None])},
)
datas = st.one_of(
    deltas,
    deltas,
    deltas,
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.fixed_dictionaries(
        {},
        optional={
            "delta": st.one_of(st.text(max_size=5), st.integers(), st.none()),
            "role": st.sampled_from(["user", "assistant", "system", "", None]),
            "outcome": st.sampled_from(["cancelled", "success"]),
            "code": st.sampled_from(["cancelled", "boom"]),
            "message": st.text(max_size=3),
        },
    ),
)
types = st.sampled_from(
    ["TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CHUNK",
     "TEXT_MESSAGE_START", "TEXT_MESSAGE_END", "TEXT_MESSAGE_END",
     "RUN_STARTED", "RUN_FINISHED", "RUN_ERROR", "CANCEL", "STATE_SNAPSHOT", "OTHER"]
)  # fmt: skip
events = st.fixed_dictionaries(
    {"type": types, "message": ids, "data": datas},
    optional={"run": runs, "agent": st.sampled_from(["a", None])},
)  # fmt: skip


odd = st.fixed_dictionaries(  # no message id, or one no dict can hold
    {"type": types},
    optional={"message": st.lists(st.integers(), max_size=1), "data": datas},
)


def delta(message, text, **extra):
    return {"type": "TEXT_MESSAGE_CONTENT", "message": message, "data": {"delta": text}, **extra}


@given(
    st.lists(st.one_of(events, events, events, odd), max_size=30),
    st.integers(min_value=0, max_value=3),
)
# a delta after its message ended, or after its run was cancelled, is not the message's
@example([delta("m1", "a"), {"type": "TEXT_MESSAGE_END", "message": "m1"}, delta("m1", "b")], 0)
@example(
    [
        {"type": "RUN_STARTED", "run": "r1"},
        delta("m1", "a", run="r1"),
        {"type": "RUN_ERROR", "run": "r1", "data": {"code": "cancelled"}},
        delta("m1", "b", run="r1"),
    ],
    0,
)
# the first delta names the message's role; none, a list or no id at all are skipped
@example([delta("m1", "a") | {"data": {"delta": "a", "role": "user"}}, delta([1], "b")], 0)
@example([{"type": "TEXT_MESSAGE_CHUNK", "data": "not a dict"}, delta(None, "c")], 2)
def test_apply_all_folds_as_apply_does(log, already):
    start = SessionState(seq=already)
    one_by_one = copy.deepcopy(start)
    for event in log:
        apply(one_by_one, 40, event)
    at_once = apply_all(copy.deepcopy(start), 40, log)
    assert at_once.as_dict() == one_by_one.as_dict()
    assert at_once.seq == one_by_one.seq
