"""What an upstream agent server streams back, read into actions on our run: the pure half
of the gateway (``sessions_app/agents/gateway.py`` does the HTTP).

Bytes of an upstream's answer go through ``SSEDecoder`` (the WHATWG ``text/event-stream``
rules: any line ending, chunks split anywhere, even inside a UTF-8 character), then through
the protocol's reader, which turns each event into a list of actions:

- ``Text(delta)``: assistant text, written with ``run.text`` (coalesced by the SDK);
- ``EndText()``: the current assistant message ended (``run.end_message``);
- ``Emit(type, data, message)``: any other event of our vocabulary (tool calls, state,
  steps, reasoning, custom), published in the run's envelope.

A reader raises ``UpstreamError`` for output it cannot trust (not JSON, a required field
missing, the upstream's own error, a stream that ends before its last event), so that the
run ends with a ``RUN_ERROR`` naming the cause. Event types a reader does not know are
skipped: protocols grow, and an older gateway should still relay what it understands.

Readers: ``AguiReader`` (AG-UI 1.0 events, e.g. pydantic-ai's AG-UI app, ag-ui-langgraph)
and ``AisdkReader`` (the Vercel AI SDK UI message stream, v1). The request bodies each
protocol expects are built here too (``agui_body``, ``aisdk_body``).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

MAX_EVENT_CHARS: Final = 8 * 1024 * 1024  # one SSE event (or an unfinished line) at most
MAX_ID_LENGTH: Final = 128  # as sessions_app.domain.events
LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


class UpstreamError(Exception):
    """The upstream's answer cannot be relayed; the message says what it sent or did."""


# --- server-sent events ----------------------------------------------------------------------


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None


@dataclass
class SSEDecoder:
    """Bytes of a ``text/event-stream`` in, whole events out (as the HTML standard parses)."""

    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _buffer: str = ""
    _started: bool = False
    _after_cr: bool = False
    _data: list[str] = field(default_factory=list)
    _size: int = 0
    _event: str = ""
    _id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if not text:
            return []  # nothing, or the first bytes of a character
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr:  # a CR ended the last line: a LF right after it is its pair
            text = text.removeprefix("\n")
        buffer = self._buffer + text
        lines = LINE_BREAK.split(buffer)
        self._buffer = lines.pop()
        self._after_cr = buffer.endswith("\r")
        events = [event for line in lines if (event := self._line(line)) is not None]
        if len(self._buffer) + self._size > MAX_EVENT_CHARS:
            raise UpstreamError(f"the upstream sent an event over {MAX_EVENT_CHARS} characters")
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
            self._size += len(value) + 1
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, kind = self._data, self._event or "message"
        self._data, self._size, self._event = [], 0, ""
        if not data:
            return None
        return SSEEvent("\n".join(data), kind, self._id)


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    delta: str


@dataclass(frozen=True)
class EndText:
    pass


@dataclass(frozen=True)
class Emit:
    type: str
    data: dict[str, Any]
    message: str | None = None


Action = Text | EndText | Emit


def json_object(payload: str) -> dict[str, Any]:
    """The JSON object an event carries, or ``UpstreamError`` quoting what came instead."""
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json can read
        raise UpstreamError(
            f"the upstream sent an event that is not JSON: {payload[:200]!r}"
        ) from None
    if not isinstance(value, dict):
        raise UpstreamError(f"the upstream sent an event that is not an object: {payload[:200]!r}")
    return value


def _need_str(event: Mapping[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value:
        raise UpstreamError(f"the upstream sent {event.get('type')!r} without {key!r}")
    return value


def _optional_str(event: Mapping[str, Any], key: str) -> str | None:
    value = event.get(key)
    return value if isinstance(value, str) and value else None


def _ident(value: str) -> str:
    """An upstream id usable as our envelope id (too long or with NUL: a stable digest)."""
    if len(value) <= MAX_ID_LENGTH and "\x00" not in value:
        return value
    return "up-" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@dataclass
class Reader:
    """What both protocols share: decoding, the open text message and tool calls, the end.

    ``answer`` is the assistant text read so far (a steer's restart sends it back upstream).
    """

    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    done: bool = False
    answer: list[str] = field(default_factory=list)
    text_open: str | None = None  # the upstream's id of the message being written
    tools: dict[str, bool] = field(default_factory=dict)  # tool call -> its input ended
    reasoning: set[str] = field(default_factory=set)
    terminal: str = "its last event"

    def feed(self, chunk: bytes) -> list[Action]:
        """Actions for the next bytes of the stream (none once the upstream said it is done)."""
        out: list[Action] = []
        for event in self.decoder.feed(chunk):
            if self.done:
                break
            out += self.on_event(event)
        return out

    def end(self) -> list[Action]:
        """The stream closed: what is still open gets closed, unless it ended too early."""
        if not self.done:
            raise UpstreamError(f"the upstream closed its stream before {self.terminal}")
        return []

    def on_event(self, event: SSEEvent) -> list[Action]:
        raise NotImplementedError

    def close_open(self) -> list[Action]:
        """Actions that close what the upstream left open (its end, or a steer's restart)."""
        out: list[Action] = self._end_text()
        for call, ended in self.tools.items():
            if not ended:
                out.append(Emit("TOOL_CALL_END", {"toolCallId": call}))
                self.tools[call] = True
        for mid in sorted(self.reasoning):
            out.append(Emit("REASONING_MESSAGE_END", {}, mid))
        self.reasoning.clear()
        return out

    def _finish(self) -> list[Action]:
        self.done = True
        return self.close_open()

    def _text(self, mid: str | None, delta: Any) -> list[Action]:
        out: list[Action] = []
        if mid is not None and self.text_open is not None and mid != self.text_open:
            out += self._end_text()  # another message started without ending this one
        self.text_open = mid or self.text_open or "-"
        if isinstance(delta, str) and delta:
            self.answer.append(delta)
            out.append(Text(delta))
        return out

    def _end_text(self) -> list[Action]:
        if self.text_open is None:
            return []
        self.text_open = None
        return [EndText()]

    def _tool_start(self, call: str, name: str) -> list[Action]:
        if call in self.tools:
            return []
        self.tools[call] = False
        return [*self._end_text(), Emit("TOOL_CALL_START", {"toolCallId": call,
                                                            "toolCallName": name})]  # fmt: skip

    def _tool_args(self, call: str, delta: Any) -> list[Action]:
        if call not in self.tools or self.tools[call] or not isinstance(delta, str) or not delta:
            return []
        return [Emit("TOOL_CALL_ARGS", {"toolCallId": call, "delta": delta})]

    def _tool_end(self, call: str) -> list[Action]:
        if self.tools.get(call) is not False:
            return []
        self.tools[call] = True
        return [Emit("TOOL_CALL_END", {"toolCallId": call})]

    def _tool_result(self, call: str, content: Any) -> list[Action]:
        out = self._tool_end(call) if call in self.tools else []
        return [*out, Emit("TOOL_CALL_RESULT", {"toolCallId": call, "content": _as_text(content)})]

    def _reasoning(self, kind: str, mid: str, delta: Any = None) -> list[Action]:
        mid = _ident(mid)
        if kind == "start":
            if mid in self.reasoning:
                return []
            self.reasoning.add(mid)
            return [Emit("REASONING_MESSAGE_START", {}, mid)]
        if mid not in self.reasoning:
            return []
        if kind == "delta":
            if not isinstance(delta, str) or not delta:
                return []
            return [Emit("REASONING_MESSAGE_CONTENT", {"delta": delta}, mid)]
        self.reasoning.discard(mid)
        return [Emit("REASONING_MESSAGE_END", {}, mid)]


# --- AG-UI -----------------------------------------------------------------------------------


@dataclass
class AguiReader(Reader):
    """AG-UI 1.0 events (``data: {"type": ...}``) into actions.

    Relayed: assistant text, tool calls (START/ARGS/END/CHUNK, RESULT), STATE_SNAPSHOT and
    STATE_DELTA, STEP_STARTED/FINISHED, reasoning messages, CUSTOM and RAW. RUN_ERROR raises.
    Skipped: RUN_STARTED (the gateway opened the run), MESSAGES_SNAPSHOT and ACTIVITY_*
    (the log is the record of the conversation), text of other roles, and the events of an
    upstream's own sub-agents (``subagentRunId``), which this gateway does not relay yet.
    """

    terminal: str = "RUN_FINISHED"
    text_roles: set[str] = field(default_factory=set)  # messages of other roles: skipped

    def on_event(self, event: SSEEvent) -> list[Action]:
        body = json_object(event.data)
        kind = body.get("type")
        if not isinstance(kind, str) or body.get("subagentRunId") is not None:
            return []
        handler = AGUI_HANDLERS.get(kind)
        return handler(self, body) if handler is not None else []

    def _run_finished(self, body: dict[str, Any]) -> list[Action]:
        return self._finish()

    def _run_error(self, body: dict[str, Any]) -> list[Action]:
        message = body.get("message")
        code = body.get("code")
        detail = message if isinstance(message, str) and message else "no message"
        if isinstance(code, str) and code:
            detail = f"{detail} (code {code})"
        raise UpstreamError(f"the upstream agent failed: {detail}")

    def _message_start(self, body: dict[str, Any]) -> list[Action]:
        mid = _need_str(body, "messageId")
        if body.get("role", "assistant") != "assistant":
            self.text_roles.add(mid)
            return []
        return self._text(mid, None)

    def _message_content(self, body: dict[str, Any]) -> list[Action]:
        mid = _optional_str(body, "messageId")
        if body["type"] == "TEXT_MESSAGE_CONTENT":
            mid = _need_str(body, "messageId")
        elif body.get("role", "assistant") != "assistant":
            return []
        if mid in self.text_roles:
            return []
        return self._text(mid, body.get("delta"))

    def _message_end(self, body: dict[str, Any]) -> list[Action]:
        mid = _optional_str(body, "messageId")
        if mid in self.text_roles:
            self.text_roles.discard(mid)
            return []
        return self._end_text() if mid == self.text_open else []

    def _tool_call(self, body: dict[str, Any]) -> list[Action]:
        kind, call = body["type"], _need_str(body, "toolCallId")
        if kind == "TOOL_CALL_START":
            return self._tool_start(call, _need_str(body, "toolCallName"))
        if kind == "TOOL_CALL_ARGS":
            return self._tool_args(call, body.get("delta"))
        if kind == "TOOL_CALL_END":
            return self._tool_end(call)
        return self._tool_result(call, body.get("content"))

    def _tool_chunk(self, body: dict[str, Any]) -> list[Action]:
        call = body.get("toolCallId")
        if not isinstance(call, str) or not call:  # a chunk continues the latest tool call
            call = next(reversed(self.tools), "") if self.tools else ""
        if not call:
            raise UpstreamError("the upstream sent 'TOOL_CALL_CHUNK' without 'toolCallId'")
        out: list[Action] = []
        if call not in self.tools:
            out += self._tool_start(call, _need_str(body, "toolCallName"))
        return out + self._tool_args(call, body.get("delta"))

    def _state(self, body: dict[str, Any]) -> list[Action]:
        if body["type"] == "STATE_SNAPSHOT":
            return [Emit("STATE_SNAPSHOT", {"snapshot": body.get("snapshot")})]
        delta = body.get("delta")
        if not isinstance(delta, list):
            raise UpstreamError("the upstream sent 'STATE_DELTA' without a JSON Patch 'delta'")
        return [Emit("STATE_DELTA", {"delta": delta})]

    def _step(self, body: dict[str, Any]) -> list[Action]:
        return [Emit(body["type"], {"stepName": _need_str(body, "stepName")})]

    def _reasoning_event(self, body: dict[str, Any]) -> list[Action]:
        kind = body["type"]
        if kind in ("REASONING_START", "REASONING_END"):
            return []  # spans around reasoning messages: the messages carry the text
        mid = _need_str(body, "messageId")
        if kind == "REASONING_MESSAGE_START":
            return self._reasoning("start", mid)
        if kind == "REASONING_MESSAGE_END":
            return self._reasoning("end", mid)
        start = self._reasoning("start", mid) if kind == "REASONING_MESSAGE_CHUNK" else []
        return start + self._reasoning("delta", mid, body.get("delta"))

    def _custom(self, body: dict[str, Any]) -> list[Action]:
        return [Emit("CUSTOM", {"name": _need_str(body, "name"), "value": body.get("value")})]

    def _raw(self, body: dict[str, Any]) -> list[Action]:
        if body.get("event") is None:
            return []
        data = {"event": body["event"]}
        if isinstance(body.get("source"), str):
            data["source"] = body["source"]
        return [Emit("RAW", data)]


AGUI_HANDLERS: Final = {
    "RUN_FINISHED": AguiReader._run_finished,
    "RUN_ERROR": AguiReader._run_error,
    "TEXT_MESSAGE_START": AguiReader._message_start,
    "TEXT_MESSAGE_CONTENT": AguiReader._message_content,
    "TEXT_MESSAGE_CHUNK": AguiReader._message_content,
    "TEXT_MESSAGE_END": AguiReader._message_end,
    "TOOL_CALL_START": AguiReader._tool_call,
    "TOOL_CALL_ARGS": AguiReader._tool_call,
    "TOOL_CALL_END": AguiReader._tool_call,
    "TOOL_CALL_RESULT": AguiReader._tool_call,
    "TOOL_CALL_CHUNK": AguiReader._tool_chunk,
    "STATE_SNAPSHOT": AguiReader._state,
    "STATE_DELTA": AguiReader._state,
    "STEP_STARTED": AguiReader._step,
    "STEP_FINISHED": AguiReader._step,
    "REASONING_START": AguiReader._reasoning_event,
    "REASONING_MESSAGE_START": AguiReader._reasoning_event,
    "REASONING_MESSAGE_CONTENT": AguiReader._reasoning_event,
    "REASONING_MESSAGE_CHUNK": AguiReader._reasoning_event,
    "REASONING_MESSAGE_END": AguiReader._reasoning_event,
    "REASONING_END": AguiReader._reasoning_event,
    "CUSTOM": AguiReader._custom,
    "RAW": AguiReader._raw,
}


# --- the Vercel AI SDK UI message stream -----------------------------------------------------


@dataclass
class AisdkReader(Reader):
    """UI message stream chunks (``data: {"type": "text-delta", ...}``) into actions.

    The inverse of our own AI SDK door (``domain/aisdk.py``): ``text-*`` → text,
    ``reasoning-*`` → reasoning messages, ``tool-input-*`` / ``tool-output-*`` → tool calls,
    ``data-state`` → STATE_SNAPSHOT, ``data-custom`` → CUSTOM, any other ``data-*``, source
    and file part → CUSTOM named after the chunk type. ``error`` and ``abort`` raise;
    ``finish`` or ``data: [DONE]`` end the answer. ``start``, steps and metadata are skipped.
    """

    terminal: str = "'finish'"

    def on_event(self, event: SSEEvent) -> list[Action]:
        if event.data.strip() == "[DONE]":
            return self._finish()
        chunk = json_object(event.data)
        kind = chunk.get("type")
        if not isinstance(kind, str):
            raise UpstreamError(f"the upstream sent a chunk without a type: {event.data[:200]!r}")
        handler = AISDK_HANDLERS.get(kind)
        if handler is not None:
            return handler(self, chunk)
        if kind.startswith("data-"):
            return self._data(chunk)
        return []

    def _text_chunk(self, chunk: dict[str, Any]) -> list[Action]:
        part = _need_str(chunk, "id")
        if chunk["type"] == "text-end":
            return self._end_text() if part == self.text_open else []
        return self._text(part, chunk.get("delta"))

    def _reasoning_chunk(self, chunk: dict[str, Any]) -> list[Action]:
        part, kind = _need_str(chunk, "id"), chunk["type"].removeprefix("reasoning-")
        return self._reasoning(kind, part, chunk.get("delta"))

    def _tool_input(self, chunk: dict[str, Any]) -> list[Action]:
        kind, call = chunk["type"], _need_str(chunk, "toolCallId")
        if kind == "tool-input-delta":
            return self._tool_args(call, chunk.get("inputTextDelta"))
        out = self._tool_start(call, _need_str(chunk, "toolName"))
        if kind == "tool-input-start":
            return out
        if out:  # the whole input in one chunk, no deltas before it
            out += self._tool_args(call, _as_text(chunk.get("input", {})))
        out += self._tool_end(call)
        if kind == "tool-input-error":
            out += self._tool_result(call, chunk.get("errorText") or "invalid tool input")
        return out

    def _tool_output(self, chunk: dict[str, Any]) -> list[Action]:
        call = _need_str(chunk, "toolCallId")
        if chunk["type"] == "tool-output-error":
            return self._tool_result(call, chunk.get("errorText") or "the tool failed")
        return self._tool_result(call, chunk.get("output"))

    def _data(self, chunk: dict[str, Any]) -> list[Action]:
        kind, value = chunk["type"], chunk.get("data")
        if kind == "data-state":
            return [Emit("STATE_SNAPSHOT", {"snapshot": value})]
        if kind == "data-custom" and isinstance(value, dict) and isinstance(value.get("name"), str):
            return [Emit("CUSTOM", {"name": value["name"], "value": value.get("value")})]
        return [Emit("CUSTOM", {"name": kind, "value": value})]

    def _part(self, chunk: dict[str, Any]) -> list[Action]:
        value = {key: val for key, val in chunk.items() if key != "type"}
        return [Emit("CUSTOM", {"name": chunk["type"], "value": value})]

    def _error(self, chunk: dict[str, Any]) -> list[Action]:
        text = chunk.get("errorText")
        raise UpstreamError(f"the upstream agent failed: {text if text else 'no message'}")

    def _abort(self, chunk: dict[str, Any]) -> list[Action]:
        raise UpstreamError("the upstream aborted its answer")

    def _finish_chunk(self, chunk: dict[str, Any]) -> list[Action]:
        return self._finish()


AISDK_HANDLERS: Final = {
    "text-start": AisdkReader._text_chunk,
    "text-delta": AisdkReader._text_chunk,
    "text-end": AisdkReader._text_chunk,
    "reasoning-start": AisdkReader._reasoning_chunk,
    "reasoning-delta": AisdkReader._reasoning_chunk,
    "reasoning-end": AisdkReader._reasoning_chunk,
    "tool-input-start": AisdkReader._tool_input,
    "tool-input-delta": AisdkReader._tool_input,
    "tool-input-available": AisdkReader._tool_input,
    "tool-input-error": AisdkReader._tool_input,
    "tool-output-available": AisdkReader._tool_output,
    "tool-output-error": AisdkReader._tool_output,
    "source-url": AisdkReader._part,
    "source-document": AisdkReader._part,
    "file": AisdkReader._part,
    "error": AisdkReader._error,
    "abort": AisdkReader._abort,
    "finish": AisdkReader._finish_chunk,
}


# --- what is sent upstream -------------------------------------------------------------------


def conversation(
    messages: Sequence[Mapping[str, Any]], answer: str = "", steer: str | None = None
) -> list[dict[str, str]]:
    """The turn's conversation (``[{role, content}]``), plus, for a steer's restart, the
    answer written so far and the steer as the next user message."""
    out = [
        {"role": m["role"], "content": m["content"]}
        for m in messages
        if m.get("role") in ("user", "assistant", "system") and isinstance(m.get("content"), str)
    ]
    if steer is not None:
        if answer:
            out.append({"role": "assistant", "content": answer})
        out.append({"role": "user", "content": steer})
    return out


def _message_ids(messages: Sequence[Mapping[str, str]], last_user: str) -> list[str]:
    ids = [f"{last_user}-{index}" for index in range(len(messages))]
    if messages and messages[-1]["role"] == "user":
        ids[-1] = last_user
    return ids


def agui_body(
    thread: str,
    run_id: str,
    messages: Sequence[Mapping[str, str]],
    message_id: str,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """A RunAgentInput: the conversation, and the tools, context, state and forwardedProps a
    client sent through our AG-UI door (``extra``: the turn's input)."""

    def listed(key: str) -> list[Any]:
        value = extra.get(key)
        return value if isinstance(value, list) else []

    ids = _message_ids(messages, message_id)
    props = extra.get("forwardedProps")
    return {
        "threadId": thread,
        "runId": run_id,
        "state": extra.get("state") if extra.get("state") is not None else {},
        "messages": [
            {"id": mid, "role": m["role"], "content": m["content"]}
            for mid, m in zip(ids, messages, strict=True)
        ],
        "tools": listed("tools"),
        "context": listed("context"),
        "forwardedProps": props if isinstance(props, dict) else {},
    }


def aisdk_body(chat: str, messages: Sequence[Mapping[str, str]], message_id: str) -> dict[str, Any]:
    """What ``DefaultChatTransport`` posts: the chat id and the conversation as UIMessages."""
    ids = _message_ids(messages, message_id)
    return {
        "id": chat,
        "trigger": "submit-message",
        "messages": [
            {"id": mid, "role": m["role"], "parts": [{"type": "text", "text": m["content"]}]}
            for mid, m in zip(ids, messages, strict=True)
        ],
    }


READERS: Final[dict[str, type[Reader]]] = {"agui": AguiReader, "aisdk": AisdkReader}
