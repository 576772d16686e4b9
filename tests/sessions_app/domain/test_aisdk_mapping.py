"""The log → AI SDK UI message stream mapping: what useChat / readUIMessageStream receive."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions_app.domain import aisdk

pytestmark = pytest.mark.engine_independent

# The keys ai@5.0.0 accepts per chunk type (it validates with z.strictObject: any other key
# fails the chunk). Every later version accepts these too.
STRICT_KEYS = {
    "start": {"messageId", "messageMetadata"},
    "start-step": set(),
    "finish-step": set(),
    "finish": {"messageMetadata"},
    "abort": set(),
    "error": {"errorText"},
    "text-start": {"id", "providerMetadata"},
    "text-delta": {"id", "delta", "providerMetadata"},
    "text-end": {"id", "providerMetadata"},
    "reasoning-start": {"id", "providerMetadata"},
    "reasoning-delta": {"id", "delta", "providerMetadata"},
    "reasoning-end": {"id", "providerMetadata"},
    "tool-input-start": {"toolCallId", "toolName", "providerExecuted", "dynamic"},
    "tool-input-delta": {"toolCallId", "inputTextDelta"},
    "tool-input-available": {
        "toolCallId",
        "toolName",
        "input",
        "providerExecuted",
        "providerMetadata",
        "dynamic",
    },  # fmt: skip
    "tool-output-available": {"toolCallId", "output", "providerExecuted", "dynamic"},
}


def check_client_rules(chunks):
    """What every ai version's processUIMessageStream needs, and ai@5.0.0's strict schema."""
    texts, reasoning, tools = set(), set(), set()
    for chunk in chunks:
        kind = chunk["type"]
        allowed = {"data", "id", "transient"} if kind.startswith("data-") else STRICT_KEYS[kind]
        assert set(chunk) - {"type"} <= allowed, chunk
        assert None not in chunk.values()
        if kind == "text-start":
            texts.add(chunk["id"])
        elif kind in ("text-delta", "text-end"):
            assert chunk["id"] in texts
            if kind == "text-end":
                texts.discard(chunk["id"])
        elif kind == "reasoning-start":
            reasoning.add(chunk["id"])
        elif kind in ("reasoning-delta", "reasoning-end"):
            assert chunk["id"] in reasoning
        elif kind == "finish-step":
            texts.clear()  # the client forgets open parts at a step's end
            reasoning.clear()
        elif kind == "tool-input-start":
            tools.add(chunk["toolCallId"])
        elif kind.startswith("tool-"):
            assert chunk["toolCallId"] in tools
    return chunks


def mapped(log, run="r1"):
    stream = aisdk.UIStream(run)
    return check_client_rules([*stream.start(), *stream.feed_all(log)]), stream


def run_events(end="success", close=True):
    events = [
        {"type": "TEXT_MESSAGE_START", "run": "r1", "message": "m1", "data": {"role": "assistant"}},
        {"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "message": "m1", "data": {"delta": "Hel"}},
        {"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "message": "m1", "data": {"delta": "lo"}},
    ]
    if close:
        events.append({"type": "TEXT_MESSAGE_END", "run": "r1", "message": "m1"})
    return [*events, {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": end}}]


def test_a_run_is_one_assistant_message_named_after_the_run():
    chunks, stream = mapped(run_events())
    assert chunks == [
        {"type": "start", "messageId": "r1"},
        {"type": "start-step"},
        {"type": "text-start", "id": "m1"},
        {"type": "text-delta", "id": "m1", "delta": "Hel"},
        {"type": "text-delta", "id": "m1", "delta": "lo"},
        {"type": "text-end", "id": "m1"},
        {"type": "finish-step"},
        {"type": "finish"},
    ]
    assert stream.done


def test_a_cancelled_run_keeps_its_text_and_ends_with_abort():
    chunks, _ = mapped(run_events(end="cancelled", close=False))
    assert [c["type"] for c in chunks[-3:]] == ["text-end", "finish-step", "abort"]


def test_a_failed_run_ends_with_its_error():
    chunks, _ = mapped([{"type": "RUN_ERROR", "run": "r1", "data": {"message": "model down"}}])
    assert chunks[-1] == {"type": "error", "errorText": "model down"}


def test_nothing_of_other_runs_or_after_the_end_reaches_the_client():
    log = [
        {"type": "TEXT_MESSAGE_CONTENT", "run": "r0", "message": "m0", "data": {"delta": "x"}},
        *run_events(),
        {"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "message": "m1", "data": {"delta": "late"}},
    ]
    chunks, _ = mapped(log)
    assert chunks[-1] == {"type": "finish"}
    assert [c["delta"] for c in chunks if c["type"] == "text-delta"] == ["Hel", "lo"]


def test_tool_calls_are_dynamic_tools_with_their_parsed_input_and_output():
    log = [
        {
            "type": "TOOL_CALL_START",
            "run": "r1",
            "data": {"toolCallId": "t1", "toolCallName": "find"},
        },
        {"type": "TOOL_CALL_ARGS", "run": "r1", "data": {"toolCallId": "t1", "delta": '{"q":'}},
        {"type": "TOOL_CALL_ARGS", "run": "r1", "data": {"toolCallId": "t1", "delta": '"x"}'}},
        {"type": "TOOL_CALL_END", "run": "r1", "data": {"toolCallId": "t1"}},
        {
            "type": "TOOL_CALL_RESULT",
            "run": "r1",
            "data": {"toolCallId": "t1", "content": "3 hits"},
        },
        {"type": "TOOL_CALL_RESULT", "run": "r1", "data": {"toolCallId": "t9", "content": "?"}},
    ]
    chunks, _ = mapped(log)
    assert chunks[-2] == {"type": "tool-input-available", "toolCallId": "t1", "toolName": "find",
                          "input": {"q": "x"}, "dynamic": True}  # fmt: skip
    assert chunks[-1] == {"type": "tool-output-available", "toolCallId": "t1",
                          "output": "3 hits", "dynamic": True}  # fmt: skip


def test_state_changes_arrive_as_one_data_part_holding_the_whole_state():
    log = [
        {"type": "STATE_SNAPSHOT", "run": "r1", "data": {"snapshot": {"step": 1}}},
        {"type": "STATE_DELTA", "run": "r1",
         "data": {"delta": [{"op": "replace", "path": "/step", "value": 2}]}},
        {"type": "STATE_DELTA", "data": {"delta": [{"op": "remove", "path": "/missing"}]}},
    ]  # fmt: skip
    chunks, _ = mapped(log)
    assert chunks[2:] == [
        {"type": "data-state", "id": "state", "data": {"step": 1}},
        {"type": "data-state", "id": "state", "data": {"step": 2}},
    ]


def test_sub_runs_are_data_parts_updated_in_place_and_their_text_is_kept():
    log = [
        {"type": "RUN_STARTED", "run": "c1", "agent": "critic", "data": {"parentRunId": "r1"}},
        {"type": "TEXT_MESSAGE_CONTENT", "run": "c1", "message": "cm", "data": {"delta": "ok"}},
        {"type": "RUN_FINISHED", "run": "c1", "data": {"outcome": "cancelled"}},
    ]
    chunks, _ = mapped(log)
    runs = [c for c in chunks if c["type"] == "data-run"]
    assert [r["data"] for r in runs] == [
        {"status": "running", "agent": "critic"},
        {"status": "cancelled"},
    ]
    assert {"type": "text-delta", "id": "cm", "delta": "ok"} in chunks


def test_live_control_is_transient_data():
    chunks, _ = mapped([{"type": "CANCEL", "data": {"reason": "stop"}}])
    assert chunks[-1] == {"type": "data-control", "data": {"type": "CANCEL", "reason": "stop"},
                          "transient": True}  # fmt: skip


def test_sse_framing_and_the_end_marker():
    assert aisdk.sse({"type": "start", "messageId": "r1"}) == (
        'data: {"type":"start","messageId":"r1"}\n\n'
    )
    assert aisdk.DONE == "data: [DONE]\n\n"
    assert aisdk.HEADERS["x-vercel-ai-ui-message-stream"] == "v1"


def test_the_users_text_is_read_from_the_text_parts_of_a_user_message():
    message = {"id": "u1", "role": "user",
               "parts": [{"type": "text", "text": "a"}, {"type": "file"}, {"type": "text", "text": "b"}]}  # fmt: skip
    assert aisdk.user_text(message) == "ab"
    assert aisdk.user_text({**message, "role": "assistant"}) is None
    assert aisdk.user_text({"role": "user", "parts": [{"type": "file"}]}) is None


LOG_EVENT = st.one_of(
    st.builds(lambda r, m, d, t=t: {"type": t, "run": r, "message": m, "data": {"delta": d}},
              st.sampled_from(["r1", "c1", "x"]), st.sampled_from(["m1", "m2"]), st.text(max_size=2))
    for t in ("TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END",
              "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT", "REASONING_MESSAGE_END")
)  # fmt: skip
RUN_EVENT = st.one_of(
    st.builds(lambda r, o: {"type": "RUN_FINISHED", "run": r, "data": {"outcome": o}},
              st.sampled_from(["r1", "c1"]), st.sampled_from(["success", "cancelled"])),
    st.just({"type": "RUN_STARTED", "run": "c1", "data": {"parentRunId": "r1"}}),
    st.builds(lambda t, k: {"type": k, "run": "r1", "data": {"toolCallId": t, "toolCallName": "f",
                                                          "delta": "1", "content": "c"}},
              st.sampled_from(["t1", "t2"]),
              st.sampled_from(["TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END",
                               "TOOL_CALL_RESULT"])),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(LOG_EVENT, RUN_EVENT), max_size=30))
def test_any_log_maps_to_chunks_every_ai_version_accepts(log):
    chunks, stream = mapped(log)
    json.dumps(chunks)
    if stream.done:
        assert chunks[-1]["type"] in ("finish", "abort", "error")
