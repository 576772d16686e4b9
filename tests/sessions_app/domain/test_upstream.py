"""The gateway's pure half: an upstream agent server's event stream read into run actions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions_app.domain import upstream
from sessions_app.domain.upstream import (
    AguiReader,
    AisdkReader,
    Emit,
    EndText,
    SSEDecoder,
    SSEEvent,
    Text,
    UpstreamError,
)

pytestmark = pytest.mark.engine_independent

# Recorded from pydantic-ai 2.78's AG-UI app (AGUIAdapter.dispatch_request) over TestModel with
# one tool, timestamps dropped: a content-free message, a tool call and its result, the answer.
AGUI_RECORDED = [
    {"type": "RUN_STARTED", "threadId": "t", "runId": "r1", "protocolVersion": "1.0"},
    {"type": "TEXT_MESSAGE_START", "messageId": "m-a", "role": "assistant"},
    {"type": "TEXT_MESSAGE_END", "messageId": "m-a"},
    {"type": "TOOL_CALL_START", "toolCallId": "call-w", "toolCallName": "weather",
     "parentMessageId": "m-a"},
    {"type": "TOOL_CALL_ARGS", "toolCallId": "call-w", "delta": '{"city":"a"}'},
    {"type": "TOOL_CALL_END", "toolCallId": "call-w"},
    {"type": "TOOL_CALL_RESULT", "messageId": "m-t", "toolCallId": "call-w",
     "content": "sunny in a", "role": "tool"},
    {"type": "TEXT_MESSAGE_START", "messageId": "m-b", "role": "assistant"},
    {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m-b", "delta": '{"weather":"sunny '},
    {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m-b", "delta": "in "},
    {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m-b", "delta": 'a"}'},
    {"type": "TEXT_MESSAGE_END", "messageId": "m-b"},
    {"type": "RUN_FINISHED", "threadId": "t", "runId": "r1", "outcome": {"type": "success"}},
]  # fmt: skip


def sse(events: list[dict]) -> bytes:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()


def read(reader, body: bytes, chunks: list[int] | None = None) -> list:
    """All actions for ``body`` fed in pieces cut at ``chunks``, then the end of the stream."""
    out, start = [], 0
    for cut in sorted(chunks or []):
        out += reader.feed(body[start:cut])
        start = cut
    return out + reader.feed(body[start:]) + reader.end()


def text_of(actions) -> str:
    return "".join(a.delta for a in actions if isinstance(a, Text))


# --- server-sent events ----------------------------------------------------------------------


def test_sse_fields_comments_multiline_data_and_every_line_ending():
    body = (
        "\ufeff: keep-alive\r\nevent: note\rid: 7\ndata: one\r\ndata:two\n\n"
        "data\n\n"  # a field with no colon: empty data, still an event
        "retry: 10\n\n"  # no data: no event
        "data: last"  # no blank line before the end: discarded, as browsers do
    ).encode()
    assert SSEDecoder().feed(body) == [
        SSEEvent("one\ntwo", "note", "7"),
        SSEEvent("", "message", "7"),
    ]


ENDINGS = st.sampled_from(["\n", "\r", "\r\n"])
EVENT = st.tuples(
    st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12),
             min_size=1, max_size=3),
    st.sampled_from(["", "message", "delta"]),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(events=st.lists(EVENT, max_size=6), ending=ENDINGS, data=st.data())
def test_any_chunking_of_the_bytes_gives_the_same_events(events, ending, data):
    text = ""
    for lines, kind in events:
        text += f"event: {kind}{ending}" if kind else ""
        text += "".join(f"data: {line}{ending}" for line in lines) + ending
    body = text.encode()
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=12))
    decoder, got, start = SSEDecoder(), [], 0
    for cut in sorted(cuts):
        got += decoder.feed(body[start:cut])
        start = cut
    got += decoder.feed(body[start:])
    assert got == [SSEEvent("\n".join(lines), kind or "message") for lines, kind in events]


def test_an_endless_event_is_refused_instead_of_filling_memory(monkeypatch):
    monkeypatch.setattr(upstream, "MAX_EVENT_CHARS", 1000)
    decoder = SSEDecoder()
    with pytest.raises(UpstreamError, match="over 1000 characters"):
        for _ in range(20):
            decoder.feed(b"data: " + b"x" * 100 + b"\n")


# --- AG-UI -----------------------------------------------------------------------------------


def test_a_recorded_pydantic_ai_stream_becomes_text_and_tool_call_events():
    actions = read(AguiReader(), sse(AGUI_RECORDED))
    assert actions == [
        EndText(),  # the content-free message: ending it writes nothing
        Emit("TOOL_CALL_START", {"toolCallId": "call-w", "toolCallName": "weather"}),
        Emit("TOOL_CALL_ARGS", {"toolCallId": "call-w", "delta": '{"city":"a"}'}),
        Emit("TOOL_CALL_END", {"toolCallId": "call-w"}),
        Emit("TOOL_CALL_RESULT", {"toolCallId": "call-w", "content": "sunny in a"}),
        Text('{"weather":"sunny '),
        Text("in "),
        Text('a"}'),
        EndText(),
    ]


@settings(max_examples=100, deadline=None)
@given(
    deltas=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8),
    data=st.data(),
)
def test_the_answer_is_the_same_text_however_the_bytes_are_cut(deltas, data):
    events = [
        {"type": "RUN_STARTED", "threadId": "t", "runId": "r"},
        {"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"},
        *({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": d} for d in deltas),
        {"type": "TEXT_MESSAGE_END", "messageId": "m"},
        {"type": "RUN_FINISHED", "threadId": "t", "runId": "r"},
    ]
    body = sse(events).replace(b"\n", b"\r\n")
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=10))
    actions = read(AguiReader(), body, cuts)
    assert text_of(actions) == "".join(deltas)
    assert actions[-1] == EndText()


def test_state_steps_reasoning_custom_and_raw_are_relayed():
    events = [
        {"type": "STEP_STARTED", "stepName": "plan"},
        {"type": "STATE_SNAPSHOT", "snapshot": {"n": 1}},
        {"type": "STATE_DELTA", "delta": [{"op": "replace", "path": "/n", "value": 2}]},
        {"type": "REASONING_START", "messageId": "r"},
        {"type": "REASONING_MESSAGE_START", "messageId": "r", "role": "reasoning"},
        {"type": "REASONING_MESSAGE_CONTENT", "messageId": "r", "delta": "hmm"},
        {"type": "REASONING_MESSAGE_END", "messageId": "r"},
        {"type": "REASONING_END", "messageId": "r"},
        {"type": "CUSTOM", "name": "progress", "value": 0.5},
        {"type": "RAW", "event": {"x": 1}, "source": "llm"},
        {"type": "STEP_FINISHED", "stepName": "plan"},
        {"type": "RUN_FINISHED"},
    ]
    assert read(AguiReader(), sse(events)) == [
        Emit("STEP_STARTED", {"stepName": "plan"}),
        Emit("STATE_SNAPSHOT", {"snapshot": {"n": 1}}),
        Emit("STATE_DELTA", {"delta": [{"op": "replace", "path": "/n", "value": 2}]}),
        Emit("REASONING_MESSAGE_START", {}, "r"),
        Emit("REASONING_MESSAGE_CONTENT", {"delta": "hmm"}, "r"),
        Emit("REASONING_MESSAGE_END", {}, "r"),
        Emit("CUSTOM", {"name": "progress", "value": 0.5}),
        Emit("RAW", {"event": {"x": 1}, "source": "llm"}),
        Emit("STEP_FINISHED", {"stepName": "plan"}),
    ]


def test_chunks_other_roles_sub_agents_and_unknown_types():
    events = [
        {"type": "TEXT_MESSAGE_CHUNK", "messageId": "m", "delta": "Hi"},
        {"type": "TEXT_MESSAGE_CHUNK", "delta": " there"},  # continues the same message
        {"type": "TEXT_MESSAGE_START", "messageId": "s", "role": "system"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "s", "delta": "secret"},
        {"type": "TEXT_MESSAGE_END", "messageId": "s"},
        {"type": "TOOL_CALL_CHUNK", "toolCallId": "c", "toolCallName": "f", "delta": "{"},
        {"type": "TOOL_CALL_CHUNK", "delta": "}"},
        {"type": "SUBAGENT_STARTED", "subagentRunId": "sub"},
        {"type": "TEXT_MESSAGE_CHUNK", "messageId": "x", "delta": "inner", "subagentRunId": "sub"},
        {"type": "ACTIVITY_SNAPSHOT", "messageId": "a", "content": {}},
        {"type": "SOMETHING_NEW", "value": 1},
        {"type": "RUN_FINISHED"},
    ]
    assert read(AguiReader(), sse(events)) == [
        Text("Hi"),
        Text(" there"),
        EndText(),
        Emit("TOOL_CALL_START", {"toolCallId": "c", "toolCallName": "f"}),
        Emit("TOOL_CALL_ARGS", {"toolCallId": "c", "delta": "{"}),
        Emit("TOOL_CALL_ARGS", {"toolCallId": "c", "delta": "}"}),
        Emit("TOOL_CALL_END", {"toolCallId": "c"}),  # closed at the run's end
    ]


def test_nothing_after_run_finished_is_read():
    events = [{"type": "RUN_FINISHED"}, {"type": "TEXT_MESSAGE_CHUNK", "messageId": "m",
                                         "delta": "late"}]  # fmt: skip
    assert read(AguiReader(), sse(events) + b"not even json\n\n") == []


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (sse([{"type": "RUN_ERROR", "message": "model overloaded", "code": "busy"}]),
         "the upstream agent failed: model overloaded (code busy)"),
        (b"data: <html>\n\n", "not JSON: '<html>'"),
        (b"data: [1, 2]\n\n", "not an object"),
        (b"data: " + b"[" * 100_000 + b"\n\n", "not JSON"),
        (sse([{"type": "TOOL_CALL_START", "toolCallName": "f"}]), "without 'toolCallId'"),
        (sse([{"type": "STATE_DELTA", "delta": {"op": "add"}}]), "JSON Patch"),
        (sse([{"type": "TEXT_MESSAGE_CHUNK", "messageId": "m", "delta": "cut"}]),
         "closed its stream before RUN_FINISHED"),
        (b"", "closed its stream before RUN_FINISHED"),
    ],
)  # fmt: skip
def test_bad_upstream_output_raises_an_error_naming_the_cause(body, cause):
    with pytest.raises(UpstreamError) as failed:
        read(AguiReader(), body)
    assert cause in str(failed.value)


def test_a_restart_closes_what_the_upstream_left_open():
    reader = AguiReader()
    reader.feed(sse([
        {"type": "TOOL_CALL_START", "toolCallId": "c", "toolCallName": "f"},
        {"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": "half an ans"},
    ]))  # fmt: skip
    assert reader.close_open() == [EndText(), Emit("TOOL_CALL_END", {"toolCallId": "c"})]
    assert "".join(reader.answer) == "half an ans"


def test_ids_too_long_for_the_log_become_a_stable_digest():
    long_id = "r" * 300
    events = [
        {"type": "REASONING_MESSAGE_START", "messageId": long_id, "role": "reasoning"},
        {"type": "REASONING_MESSAGE_CONTENT", "messageId": long_id, "delta": "x"},
        {"type": "RUN_FINISHED"},
    ]
    first, second, end = read(AguiReader(), sse(events))
    assert first.message == second.message == end.message
    assert first.message.startswith("up-") and len(first.message) <= 128


# --- the AI SDK UI message stream ------------------------------------------------------------

# What streamText(...).toUIMessageStreamResponse() of ai 7 sends for a tool call and an answer.
AISDK_STREAM = [
    {"type": "start", "messageId": "msg-1"},
    {"type": "start-step"},
    {"type": "reasoning-start", "id": "r0"},
    {"type": "reasoning-delta", "id": "r0", "delta": "thinking"},
    {"type": "reasoning-end", "id": "r0"},
    {"type": "tool-input-start", "toolCallId": "t1", "toolName": "weather"},
    {"type": "tool-input-delta", "toolCallId": "t1", "inputTextDelta": '{"city":'},
    {"type": "tool-input-delta", "toolCallId": "t1", "inputTextDelta": '"Paris"}'},
    {"type": "tool-input-available", "toolCallId": "t1", "toolName": "weather",
     "input": {"city": "Paris"}},
    {"type": "tool-output-available", "toolCallId": "t1", "output": {"sky": "clear"}},
    {"type": "finish-step"},
    {"type": "start-step"},
    {"type": "text-start", "id": "0"},
    {"type": "text-delta", "id": "0", "delta": "Clear "},
    {"type": "text-delta", "id": "0", "delta": "skies."},
    {"type": "text-end", "id": "0"},
    {"type": "data-state", "id": "state", "data": {"city": "Paris"}},
    {"type": "data-custom", "data": {"name": "usage", "value": 12}},
    {"type": "data-weather", "data": {"temp": 21}},
    {"type": "source-url", "sourceId": "s", "url": "https://example.org"},
    {"type": "finish-step"},
    {"type": "finish"},
]  # fmt: skip


def test_an_ai_sdk_stream_becomes_reasoning_tool_call_text_state_and_custom_events():
    body = sse(AISDK_STREAM) + b"data: [DONE]\n\n"
    assert read(AisdkReader(), body) == [
        Emit("REASONING_MESSAGE_START", {}, "r0"),
        Emit("REASONING_MESSAGE_CONTENT", {"delta": "thinking"}, "r0"),
        Emit("REASONING_MESSAGE_END", {}, "r0"),
        Emit("TOOL_CALL_START", {"toolCallId": "t1", "toolCallName": "weather"}),
        Emit("TOOL_CALL_ARGS", {"toolCallId": "t1", "delta": '{"city":'}),
        Emit("TOOL_CALL_ARGS", {"toolCallId": "t1", "delta": '"Paris"}'}),
        Emit("TOOL_CALL_END", {"toolCallId": "t1"}),
        Emit("TOOL_CALL_RESULT", {"toolCallId": "t1", "content": '{"sky": "clear"}'}),
        Text("Clear "),
        Text("skies."),
        EndText(),
        Emit("STATE_SNAPSHOT", {"snapshot": {"city": "Paris"}}),
        Emit("CUSTOM", {"name": "usage", "value": 12}),
        Emit("CUSTOM", {"name": "data-weather", "value": {"temp": 21}}),
        Emit("CUSTOM", {"name": "source-url",
                        "value": {"sourceId": "s", "url": "https://example.org"}}),
    ]  # fmt: skip


def test_a_tool_input_in_one_chunk_and_a_failed_tool():
    chunks = [
        {"type": "tool-input-available", "toolCallId": "t", "toolName": "f", "input": {"a": 1}},
        {"type": "tool-output-error", "toolCallId": "t", "errorText": "boom"},
        {"type": "finish"},
    ]
    assert read(AisdkReader(), sse(chunks)) == [
        Emit("TOOL_CALL_START", {"toolCallId": "t", "toolCallName": "f"}),
        Emit("TOOL_CALL_ARGS", {"toolCallId": "t", "delta": '{"a": 1}'}),
        Emit("TOOL_CALL_END", {"toolCallId": "t"}),
        Emit("TOOL_CALL_RESULT", {"toolCallId": "t", "content": "boom"}),
    ]


def test_done_alone_ends_an_ai_sdk_stream():
    chunks = [{"type": "text-delta", "id": "0", "delta": "ok"}]
    assert read(AisdkReader(), sse(chunks) + b"data: [DONE]\n\n") == [Text("ok"), EndText()]


@pytest.mark.parametrize(
    ("chunks", "cause"),
    [
        ([{"type": "error", "errorText": "rate limited"}], "failed: rate limited"),
        ([{"type": "abort"}], "aborted its answer"),
        ([{"type": "text-delta", "id": "0", "delta": "cut"}], "before 'finish'"),
        ([{"id": "0"}], "without a type"),
        ([{"type": "tool-input-start", "toolCallId": "t"}], "without 'toolName'"),
    ],
)
def test_bad_or_failed_ai_sdk_streams_raise(chunks, cause):
    with pytest.raises(UpstreamError, match=cause):
        read(AisdkReader(), sse(chunks))


# --- what goes upstream ----------------------------------------------------------------------


def test_the_run_agent_input_carries_the_conversation_and_what_the_client_sent():
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "weather?"}]  # fmt: skip
    extra = {"tools": [{"name": "f", "description": "", "parameters": {}}],
             "context": [{"description": "tz", "value": "UTC"}], "state": {"n": 1},
             "forwardedProps": {"k": "v"}}  # fmt: skip
    body = upstream.agui_body("talk", "run-1", messages, "u-3", extra)
    assert body == {
        "threadId": "talk", "runId": "run-1", "state": {"n": 1},
        "messages": [{"id": "u-3-0", "role": "user", "content": "hi"},
                     {"id": "u-3-1", "role": "assistant", "content": "hello"},
                     {"id": "u-3", "role": "user", "content": "weather?"}],
        "tools": extra["tools"], "context": extra["context"], "forwardedProps": {"k": "v"},
    }  # fmt: skip
    bare = upstream.agui_body("talk", "run-1", messages, "u-3", {"tools": "junk", "state": None})
    assert (bare["tools"], bare["context"], bare["state"], bare["forwardedProps"]) == (
        [],
        [],
        {},
        {},
    )


def test_a_steer_restart_sends_the_answer_so_far_and_the_steer():
    turn = [{"role": "user", "content": "tell a story"}, {"role": "tool", "content": "x"}]
    assert upstream.conversation(turn, "Once upon", "shorter") == [
        {"role": "user", "content": "tell a story"},
        {"role": "assistant", "content": "Once upon"},
        {"role": "user", "content": "shorter"},
    ]
    body = upstream.aisdk_body("talk", upstream.conversation(turn), "u-1")
    assert body["messages"] == [
        {"id": "u-1", "role": "user", "parts": [{"type": "text", "text": "tell a story"}]}
    ]


# --- OpenAI-compatible Chat Completions (the adapter's ChunkMapping under the gateway) --------


def openai_chunk(**delta) -> dict:
    return {"choices": [{"index": 0, "delta": delta}]}


def test_an_openai_stream_becomes_reasoning_text_and_tool_calls():
    from sessions_app.agents.gateway import OpenAIReader

    chunks = [
        openai_chunk(role="assistant", reasoning_content="Let me "),
        openai_chunk(reasoning_content="think."),
        openai_chunk(content="Looking "),
        openai_chunk(content="it up."),
        openai_chunk(tool_calls=[{"index": 0, "id": "c1", "function": {"name": "search",
                                                                         "arguments": '{"q"'}}]),
        openai_chunk(tool_calls=[{"index": 0, "function": {"arguments": ': "x"}'}}]),
    ]  # fmt: skip
    actions = read(OpenAIReader(), sse(chunks) + b"data: [DONE]\n\n")
    mid = actions[0].message
    assert actions[:4] == [
        Emit("REASONING_MESSAGE_START", {}, mid),
        Emit("REASONING_MESSAGE_CONTENT", {"delta": "Let me "}, mid),
        Emit("REASONING_MESSAGE_CONTENT", {"delta": "think."}, mid),
        Emit("REASONING_MESSAGE_END", {}, mid),
    ]
    assert actions[4:] == [
        Text("Looking "),
        Text("it up."),
        EndText(),
        Emit("TOOL_CALL_START", {"toolCallId": "c1", "toolCallName": "search"}),
        Emit("TOOL_CALL_ARGS", {"toolCallId": "c1", "delta": '{"q"'}),
        Emit("TOOL_CALL_ARGS", {"toolCallId": "c1", "delta": ': "x"}'}),
        Emit("TOOL_CALL_END", {"toolCallId": "c1"}),
    ]


def test_an_openai_stream_ends_at_done_or_after_a_finish_reason_and_raises_errors():
    from sessions_app.agents.gateway import OpenAIReader

    finished = {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}
    assert text_of(read(OpenAIReader(), sse([finished]))) == "ok"
    with pytest.raises(UpstreamError, match="before 'data: \\[DONE\\]'"):
        read(OpenAIReader(), sse([openai_chunk(content="cut")]))
    with pytest.raises(UpstreamError, match="the upstream failed: quota exceeded"):
        read(OpenAIReader(), sse([{"error": {"message": "quota exceeded"}}]))


# --- the setting -----------------------------------------------------------------------------


def test_a_gateway_setting_becomes_upstreams_and_handlers():
    from sessions_app.agents import gateway

    setting = {
        "assistant": {"protocol": "agui", "url": "http://127.0.0.1:9000/agent",
                      "headers": {"Authorization": "Bearer x"}, "timeout": 5},
        "writer": {"protocol": "openai", "url": "https://api.example.com/v1", "model": "m"},
    }  # fmt: skip
    assert gateway.from_setting("assistant", setting["assistant"]) == gateway.Upstream(
        "agui", "http://127.0.0.1:9000/agent", {"Authorization": "Bearer x"}, 5.0, "", "assistant"
    )
    assert sorted(gateway.handlers(setting)) == ["assistant", "writer"]
    secret = gateway.from_setting("a", {"protocol": "aisdk", "url": "https://u:pw@h:8443/p?key=k"})
    assert secret.label() == "upstream 'a' (https://h:8443/p)"  # errors reach users
    assert gateway.handlers(None) == {}


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("http://x", "expected a dict such as"),
        ({"protocol": "grpc", "url": "http://x"}, "'protocol' must be one of"),
        ({"protocol": "agui", "url": "ftp://x"}, "'url' must be an http:// or https:// URL"),
        ({"protocol": "agui"}, "'url' must be"),
        ({"protocol": "agui", "url": "http://x", "retries": 3}, "unknown keys ['retries']"),
        ({"protocol": "agui", "url": "http://x", "headers": {"X": "a\r\nInjected: 1"}},
         "without line breaks"),
        ({"protocol": "agui", "url": "http://x", "headers": {"Bad Name": "v"}},
         "not a valid header name"),
        ({"protocol": "agui", "url": "http://x", "timeout": 0}, "positive number of seconds"),
        ({"protocol": "agui", "url": "http://x", "timeout": True}, "positive number of seconds"),
        ({"protocol": "openai", "url": "http://x"}, "needs 'model'"),
        ({"protocol": "aisdk", "url": "http://x", "model": "m"}, "'model' is for the openai"),
    ],
)  # fmt: skip
def test_a_bad_gateway_setting_says_how_to_fix_it(value, hint):
    from sessions_app.agents import gateway

    with pytest.raises(ValueError, match=r"AGENT_GATEWAYS\"\]\['assistant'\]") as bad:
        gateway.from_setting("assistant", value)
    assert hint in str(bad.value)
    with pytest.raises(ValueError, match="agent names are strings"):
        gateway.from_setting("", {"protocol": "agui", "url": "http://x"})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
AGUI_KEYS = ["messageId", "role", "delta", "toolCallId", "toolCallName", "content", "snapshot",
             "stepName", "name", "value", "event", "message", "code", "subagentRunId"]  # fmt: skip
AISDK_KEYS = ["id", "delta", "toolCallId", "toolName", "input", "inputTextDelta", "output",
              "errorText", "data"]  # fmt: skip


def hostile(types, keys):
    values = st.one_of(JSON, st.sampled_from(["m", "c", "assistant", "user"]))
    return st.lists(
        st.builds(lambda kind, fields: {"type": kind, **fields}, st.sampled_from(types) | JSON,
                  st.dictionaries(st.sampled_from(keys), values, max_size=5)),
        max_size=12,
    )  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(events=hostile([*upstream.AGUI_HANDLERS, "SUBAGENT_STARTED"], AGUI_KEYS))
def test_whatever_an_agui_upstream_sends_only_upstream_errors_come_out(events):
    try:
        actions = read(AguiReader(), sse(events))
    except UpstreamError:
        return
    for action in actions:  # what reaches the log has the types the log checks for
        if isinstance(action, Text):
            assert isinstance(action.delta, str)
        elif isinstance(action, Emit) and "toolCallId" in action.data:
            assert isinstance(action.data["toolCallId"], str)


@settings(max_examples=120, deadline=None)
@given(events=hostile([*upstream.AISDK_HANDLERS, "data-x"], AISDK_KEYS))
def test_whatever_an_ai_sdk_upstream_sends_only_upstream_errors_come_out(events):
    try:
        read(AisdkReader(), sse(events))
    except UpstreamError:
        pass
