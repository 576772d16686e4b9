"""The log → AG-UI mapping: what a real AG-UI client receives for what an agent wrote."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions_app.domain import agui
from sessions_app.domain.fold import fold

pytestmark = pytest.mark.engine_independent

core = pytest.importorskip("ag_ui.core")
pydantic = pytest.importorskip("pydantic")
EVENT = pydantic.TypeAdapter(core.Event)


def user(mid="u1", text="hi"):
    return [
        {"type": "TEXT_MESSAGE_START", "message": mid, "data": {"role": "user"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": mid, "data": {"delta": text}},
        {"type": "TEXT_MESSAGE_END", "message": mid},
    ]


def answer(run="r1", mid="m1", words=("Hel", "lo"), end="success", close=True, agent="writer"):
    events = [
        {"type": "RUN_STARTED", "run": run, "agent": agent, "time": 1000},
        {"type": "TEXT_MESSAGE_START", "run": run, "message": mid, "data": {"role": "assistant"}},
    ]
    events += [
        {"type": "TEXT_MESSAGE_CONTENT", "run": run, "message": mid, "data": {"delta": w}}
        for w in words
    ]
    if close:
        events.append({"type": "TEXT_MESSAGE_END", "run": run, "message": mid})
    if end:
        events.append({"type": "RUN_FINISHED", "run": run, "data": {"outcome": end}})
    return events


def check_client_rules(events):
    """The ordering rules @ag-ui/client 1.0 enforces (verify.ts), and its schema (the Python
    models generated from the same spec): a violation fails the whole run in the client."""
    assert events and events[0]["type"] in ("RUN_STARTED", "RUN_ERROR")
    open_messages, open_tools, open_steps, subagents, ended = set(), set(), set(), set(), False
    for event in events:
        EVENT.validate_python(event)
        assert None not in event.values() and "offset" not in event
        kind = event["type"]
        assert not ended, f"{kind} after the run ended"
        if kind == "TEXT_MESSAGE_START":
            assert event["messageId"] not in open_messages
            open_messages.add(event["messageId"])
        elif kind in ("TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END"):
            assert event["messageId"] in open_messages
            if kind == "TEXT_MESSAGE_END":
                open_messages.discard(event["messageId"])
        elif kind == "TOOL_CALL_START":
            open_tools.add(event["toolCallId"])
        elif kind in ("TOOL_CALL_ARGS", "TOOL_CALL_END"):
            assert event["toolCallId"] in open_tools
            if kind == "TOOL_CALL_END":
                open_tools.discard(event["toolCallId"])
        elif kind == "STEP_STARTED":  # the client keeps each sub-agent's steps apart
            step = (event["stepName"], event.get("subagentRunId"))
            assert step not in open_steps, f"step {step} is already active"
            open_steps.add(step)
        elif kind == "STEP_FINISHED":
            open_steps.remove((event["stepName"], event.get("subagentRunId")))
        elif kind == "SUBAGENT_STARTED":
            assert event["subagentRunId"] not in subagents
            subagents.add(event["subagentRunId"])
        elif kind in ("SUBAGENT_FINISHED", "SUBAGENT_ERROR"):
            subagents.remove(event["subagentRunId"])
        elif kind in ("RUN_FINISHED", "RUN_ERROR"):
            assert not (open_messages or open_tools or open_steps or subagents), event
            ended = True
    return events


def mapped(log, run="r1", legacy=False):
    stream = agui.RunStream("chat-1", run, legacy=legacy)
    return check_client_rules([stream.run_started(), *stream.feed_all(log)]), stream


def test_an_answer_becomes_a_run_with_its_message_and_a_success_outcome():
    events, stream = mapped(answer()[1:])
    assert [e["type"] for e in events] == [
        "RUN_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END", "RUN_FINISHED",
    ]  # fmt: skip
    assert events[0] == {"type": "RUN_STARTED", "threadId": "chat-1", "runId": "r1",
                         "protocolVersion": "1.0"}  # fmt: skip
    assert "".join(e.get("delta", "") for e in events) == "Hello"
    assert events[-1]["outcome"] == {"type": "success"} and stream.done


def test_a_cancelled_run_closes_its_open_message_before_the_cancelled_outcome():
    events, _ = mapped(answer(words=("Hel",), end="cancelled", close=False)[1:])
    assert [e["type"] for e in events[-2:]] == ["TEXT_MESSAGE_END", "RUN_FINISHED"]
    assert events[-1]["outcome"] == {"type": "cancelled"}


def test_clients_without_a_protocol_version_hear_a_cancel_as_run_error_cancelled():
    events, _ = mapped(answer(end="cancelled")[1:], legacy=True)
    assert "protocolVersion" not in events[0]
    assert events[-1] == {"type": "RUN_ERROR", "message": "the run was cancelled",
                          "code": "cancelled"}  # fmt: skip


def test_other_runs_other_devices_and_anything_after_the_end_are_left_out():
    log = [
        *answer(run="r0", mid="m0")[1:3],  # another run going at the same time
        *user("u2", "meanwhile"),  # another device's message
        *answer()[1:],
        {"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "message": "m1", "data": {"delta": "late"}},
    ]
    events, _ = mapped(log)
    assert {e.get("messageId") for e in events} == {None, "m1"}
    assert events[-1]["type"] == "RUN_FINISHED"


def test_sub_runs_become_sub_agents_and_are_closed_when_the_run_is_cancelled_first():
    log = [
        {"type": "RUN_STARTED", "run": "c1", "agent": "critic", "data": {"parentRunId": "r1"}},
        {"type": "TEXT_MESSAGE_START", "run": "c1", "message": "cm", "data": {"role": "assistant"}},
        {"type": "TEXT_MESSAGE_CONTENT", "run": "c1", "message": "cm", "data": {"delta": "risky"}},
        {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": "cancelled"}},
        {"type": "RUN_FINISHED", "run": "c1", "data": {"outcome": "cancelled"}},
    ]
    events, _ = mapped(log)
    assert events[1] == {"type": "SUBAGENT_STARTED", "subagentRunId": "c1", "name": "critic"}
    assert events[3]["subagentRunId"] == "c1"
    assert [e["type"] for e in events[-3:]] == [
        "TEXT_MESSAGE_END", "SUBAGENT_ERROR", "RUN_FINISHED",
    ]  # fmt: skip


def test_a_finished_sub_run_is_a_successful_sub_agent():
    log = [
        {"type": "RUN_STARTED", "run": "c1", "agent": "critic", "data": {"parentRunId": "r1"}},
        {"type": "RUN_FINISHED", "run": "c1", "data": {"outcome": "success"}},
        {"type": "RUN_FINISHED", "run": "r1"},
    ]
    events, _ = mapped(log)
    assert events[2] == {"type": "SUBAGENT_FINISHED", "subagentRunId": "c1",
                         "outcome": {"type": "success"}}  # fmt: skip


def test_live_control_is_visible_as_custom_events():
    log = [
        {"type": "CANCEL", "data": {"reason": "stop"}, "time": 5},
        {"type": "CONTROL_ACK", "run": "r1", "data": {"action": "cancel", "control": "x"}},
    ]
    events, _ = mapped(log)
    assert events[1] == {"type": "CUSTOM", "name": "sessions.CANCEL", "value": {"reason": "stop"},
                         "timestamp": 5}  # fmt: skip
    assert events[2]["value"]["action"] == "cancel"


def test_tool_calls_state_and_steps_map_to_their_ag_ui_names():
    log = [
        {"type": "STEP_STARTED", "run": "r1", "data": {"stepName": "search"}},
        {
            "type": "TOOL_CALL_START",
            "run": "r1",
            "data": {"toolCallId": "t1", "toolCallName": "find"},
        },
        {"type": "TOOL_CALL_ARGS", "run": "r1", "data": {"toolCallId": "t1", "delta": '{"q":1}'}},
        {"type": "TOOL_CALL_RESULT", "run": "r1", "data": {"toolCallId": "t1", "content": "ok"}},
        {
            "type": "STATE_DELTA",
            "run": "r1",
            "data": {"delta": [{"op": "add", "path": "/a", "value": 1}]},
        },
        {"type": "RUN_ERROR", "run": "r1", "data": {"message": "boom", "code": "model"}},
    ]
    events, _ = mapped(log)
    kinds = [e["type"] for e in events]
    assert kinds == [
        "RUN_STARTED", "STEP_STARTED", "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_RESULT",
        "STATE_DELTA", "TOOL_CALL_END", "STEP_FINISHED", "RUN_ERROR",
    ]  # fmt: skip
    assert events[4]["messageId"] == "t1-result" and events[-1]["code"] == "model"


def test_reconnecting_mid_message_completes_the_message_exactly_once():
    log = [*user(), *answer(words=("Once ", "upon ", "a ", "time"))]
    cut = 7  # the client saw up to the second word
    state = fold(enumerate(log[:cut], start=1))
    stream, header = agui.continuation(state, "chat-1", "r1")
    rest = stream.feed_all(log[cut:])
    events = check_client_rules([*header, *rest])
    assert [e["type"] for e in header] == ["RUN_STARTED", "MESSAGES_SNAPSHOT", "TEXT_MESSAGE_START"]
    snapshot = {m["id"]: m for m in header[1]["messages"]}
    assert snapshot["u1"]["content"] == "hi" and snapshot["m1"]["content"] == "Once upon "
    # What the client does: the snapshot replaces the message, the deltas append to it.
    text = snapshot["m1"]["content"] + "".join(
        e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT"
    )
    assert text == "Once upon a time"


def test_reconnecting_after_the_run_ended_replays_its_end_only():
    log = [*user(), *answer()]
    state = fold(enumerate(log, start=1))
    stream, header = agui.continuation(state, "chat-1", "r1")
    check_client_rules(header)
    assert [e["type"] for e in header] == ["RUN_STARTED", "MESSAGES_SNAPSHOT", "RUN_FINISHED"]
    assert stream.done and stream.feed_all(answer()) == []


def test_reconnecting_inside_a_sub_agent_reopens_it_with_its_partial_message():
    log = [
        *answer(words=("Plan",), end=None),
        {"type": "RUN_STARTED", "run": "c1", "agent": "critic", "data": {"parentRunId": "r1"}},
        {"type": "TEXT_MESSAGE_START", "run": "c1", "message": "cm", "data": {"role": "assistant"}},
        {"type": "TEXT_MESSAGE_CONTENT", "run": "c1", "message": "cm", "data": {"delta": "ris"}},
    ]
    state = fold(enumerate(log, start=1))
    stream, header = agui.continuation(state, "chat-1", "r1")
    tail = [
        {"type": "TEXT_MESSAGE_CONTENT", "run": "c1", "message": "cm", "data": {"delta": "ky"}},
        {"type": "RUN_FINISHED", "run": "c1"},
        {"type": "RUN_FINISHED", "run": "r1"},
    ]
    events = check_client_rules([*header, *stream.feed_all(tail)])
    snapshot = {m["id"]: m for m in header[1]["messages"]}
    assert snapshot["cm"] == {"id": "cm", "role": "assistant", "content": "ris",
                              "subagentRunId": "c1"}  # fmt: skip
    assert {"type": "SUBAGENT_STARTED", "subagentRunId": "c1", "name": "critic"} in header
    assert [e["type"] for e in events[-3:]] == ["TEXT_MESSAGE_END", "SUBAGENT_FINISHED",
                                                "RUN_FINISHED"]  # fmt: skip


def test_sse_framing_is_lf_only_with_the_offset_in_the_id_line():
    text = agui.sse(
        {"type": "RUN_STARTED", "threadId": "t", "runId": "r"}, "0000000000000000_0000000000000007"
    )
    assert text == (
        'id: 0000000000000000_0000000000000007\ndata: {"type":"RUN_STARTED","threadId":"t",'
        '"runId":"r"}\n\n'
    )
    assert "\r" not in text


# --- whatever the log holds, the client's rules hold ---------------------------------------------

RUNS = st.sampled_from(["r1", "r1", "c1", "c2", "other"])
MIDS = st.sampled_from(["m1", "m2", "cm"])
LOG_EVENT = st.one_of(
    st.builds(
        lambda r, m: {
            "type": "TEXT_MESSAGE_START",
            "run": r,
            "message": m,
            "data": {"role": "assistant"},
        },
        RUNS,
        MIDS,
    ),  # fmt: skip
    st.builds(
        lambda r, m, d: {
            "type": "TEXT_MESSAGE_CONTENT",
            "run": r,
            "message": m,
            "data": {"delta": d},
        },
        RUNS,
        MIDS,
        st.text(max_size=3),
    ),  # fmt: skip
    st.builds(lambda r, m: {"type": "TEXT_MESSAGE_END", "run": r, "message": m}, RUNS, MIDS),
    st.builds(
        lambda r, p: {"type": "RUN_STARTED", "run": r, "data": {"parentRunId": p}},
        st.sampled_from(["c1", "c2"]),
        st.sampled_from(["r1", "c1", "c2", "x"]),
    ),  # fmt: skip
    st.builds(
        lambda r, o: {"type": "RUN_FINISHED", "run": r, "data": {"outcome": o}},
        RUNS,
        st.sampled_from(["success", "cancelled"]),
    ),  # fmt: skip
    st.builds(lambda r: {"type": "RUN_ERROR", "run": r, "data": {"message": "x"}}, RUNS),
    st.builds(
        lambda r, t: {
            "type": "TOOL_CALL_START",
            "run": r,
            "data": {"toolCallId": t, "toolCallName": "f"},
        },
        RUNS,
        st.sampled_from(["t1", "t2"]),
    ),  # fmt: skip
    st.builds(
        lambda t: {"type": "TOOL_CALL_ARGS", "run": "r1", "data": {"toolCallId": t, "delta": "{"}},
        st.sampled_from(["t1", "t2"]),
    ),  # fmt: skip
    st.builds(
        lambda r, s: {"type": "STEP_STARTED", "run": r, "data": {"stepName": s}},
        RUNS,
        st.sampled_from(["a", "b"]),
    ),  # fmt: skip
    st.builds(
        lambda r, s: {"type": "STEP_FINISHED", "run": r, "data": {"stepName": s}},
        RUNS,
        st.sampled_from(["a", "b"]),
    ),  # fmt: skip
    st.just({"type": "CANCEL"}),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(LOG_EVENT, max_size=30), st.booleans(), st.booleans())
def test_any_log_maps_to_a_stream_the_client_accepts(log, legacy, finish):
    stream = agui.RunStream("chat-1", "r1", legacy=legacy)
    tail = [{"type": "RUN_FINISHED", "run": "r1"}] if finish else []
    events = [stream.run_started(), *stream.feed_all([*log, *tail])]
    check_client_rules(events)
    if finish:
        assert events[-1]["type"] in ("RUN_FINISHED", "RUN_ERROR")


def test_a_reconnect_after_a_sub_agent_failed_under_its_own_running_sub_agent_ends_cleanly():
    # c1 runs under c2, c2 fails while c1 never ended: a client reconnecting after that was
    # told c1 had started under a c2 it never saw start, and c1 was still open at the run's
    # end, which the client refuses (found by the property test below).
    log = [
        {"type": "RUN_STARTED", "run": "r1"},
        {"type": "RUN_STARTED", "run": "c2", "data": {"parentRunId": "r1"}},
        {"type": "RUN_STARTED", "run": "c1", "data": {"parentRunId": "c2"}},
        {"type": "RUN_ERROR", "run": "c2", "data": {"message": "x"}},
        {"type": "TEXT_MESSAGE_START", "run": "c1", "message": "m", "data": {"role": "assistant"}},
        {"type": "RUN_FINISHED", "run": "r1"},
    ]
    for cut in range(4, len(log) + 1):
        stream, header = agui.continuation(fold(enumerate(log[:cut], start=1)), "chat-1", "r1")
        events = [*header, *stream.feed_all(log[cut:])]
        check_client_rules(events)
        assert not any(e.get("subagentRunId") == "c1" for e in events), cut


@settings(max_examples=100, deadline=None)
@given(st.lists(LOG_EVENT, max_size=30), st.integers(0, 30))
def test_any_reconnect_point_gives_a_continuation_the_client_accepts(log, cut):
    log = [{"type": "RUN_STARTED", "run": "r1"}, *log, {"type": "RUN_FINISHED", "run": "r1"}]
    cut = min(cut, len(log))
    stream, header = agui.continuation(fold(enumerate(log[:cut], start=1)), "chat-1", "r1")
    check_client_rules([*header, *stream.feed_all(log[cut:])])
