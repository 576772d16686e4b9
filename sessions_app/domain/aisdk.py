"""Our session log seen as the Vercel AI SDK UI message stream (v1): the pure half of the door.

One top-level run of a session is one assistant ``UIMessage`` whose id is the run's id. Only
the chunk types and fields that ``ai`` 5.0.0 through 7 all accept are produced (5.0.0 to
5.0.216 refuse unknown keys, every version refuses unknown types), so ``finishReason`` is
never sent.

Mapping (log → chunks):

- RUN_STARTED of the run → ``start {messageId: run}``, ``start-step``;
- its RUN_FINISHED → open parts ended, ``finish-step``, then ``finish`` (success) or
  ``abort`` (cancelled); RUN_ERROR → ``error {errorText}``;
- TEXT_MESSAGE_* of the run and its sub-runs → ``text-start/delta/end`` with the message id
  as the part id (one text part per message);
- REASONING_MESSAGE_* → ``reasoning-start/delta/end``;
- TOOL_CALL_START/ARGS/END/RESULT → ``tool-input-start/delta/available`` and
  ``tool-output-available``, as dynamic tools (the client needs no tool definitions);
- sub-runs → ``data-run`` parts (``id``: the sub-run, ``data``: agent, parent and status),
  updated in place as they end;
- STATE_SNAPSHOT / STATE_DELTA → one ``data-state`` part (id ``state``) with the whole state;
- CUSTOM → ``data-custom {name, value}``; CANCEL, STEER, CONTROL_ACK → transient
  ``data-control`` chunks (seen by ``onData``, never stored in the message).

Not mapped (see docs/sessions/aisdk.md): STEP_*, REASONING_START/END spans, RAW,
MESSAGES_SNAPSHOT, tool-role text messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sessions_app.domain.jsonpatch import PatchError, apply_patch

Chunk = dict[str, Any]
HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "x-vercel-ai-ui-message-stream": "v1",
}
DONE: Final = "data: [DONE]\n\n"


def _data(event: Mapping[str, Any]) -> Mapping[str, Any]:
    data = event.get("data")
    return data if isinstance(data, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass
class UIStream:
    """Maps the events of one top-level run (and its sub-runs) to UI message stream chunks."""

    run_id: str
    done: bool = False
    runs: dict[str, str | None] = field(default_factory=dict)  # sub-run -> parent
    texts: set[str] = field(default_factory=set)  # open text parts
    finished_texts: set[str] = field(default_factory=set)
    reasoning: set[str] = field(default_factory=set)
    tools: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # call -> name, args
    inputs_done: set[str] = field(default_factory=set)  # tool calls with their input available
    state: Any = None

    def start(self) -> list[Chunk]:
        return [{"type": "start", "messageId": self.run_id}, {"type": "start-step"}]

    def ours(self, run: object) -> bool:
        return run == self.run_id or (isinstance(run, str) and run in self.runs)

    def feed(self, event: Mapping[str, Any]) -> list[Chunk]:
        """The chunks for one log event (often none); sets ``done`` at the run's end."""
        if self.done:
            return []
        kind = event.get("type")
        handler = HANDLERS.get(kind) if isinstance(kind, str) else None
        return handler(self, event, _data(event)) if handler is not None else []

    def feed_all(self, events: Iterable[Mapping[str, Any]]) -> list[Chunk]:
        out: list[Chunk] = []
        for event in events:
            out += self.feed(event)
        return out

    # --- the run's edges -----------------------------------------------------------------

    def _close(self) -> list[Chunk]:
        out: list[Chunk] = [{"type": "text-end", "id": mid} for mid in sorted(self.texts)]
        out += [{"type": "reasoning-end", "id": mid} for mid in sorted(self.reasoning)]
        self.finished_texts |= self.texts
        self.texts.clear()
        self.reasoning.clear()
        return [*out, {"type": "finish-step"}]

    def _run_started(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        run, parent = event.get("run"), data.get("parentRunId")
        if not isinstance(run, str) or run == self.run_id or run in self.runs:
            return []
        if not self.ours(parent):
            return []
        self.runs[run] = parent if parent != self.run_id else None
        return [self._run_part(run, event, "running")]

    def _run_part(self, run: str, event: Mapping[str, Any], status: str) -> Chunk:
        info: dict[str, Any] = {"status": status}
        if _str(event.get("agent")):
            info["agent"] = event["agent"]
        if self.runs.get(run):
            info["parent"] = self.runs[run]
        return {"type": "data-run", "id": run, "data": info}

    def _run_finished(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        run = event.get("run")
        cancelled = data.get("outcome") == "cancelled"
        if run == self.run_id:
            self.done = True
            return [*self._close(), {"type": "abort"} if cancelled else {"type": "finish"}]
        if isinstance(run, str) and run in self.runs:
            return [self._run_part(run, event, "cancelled" if cancelled else "finished")]
        return []

    def _run_error(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        run = event.get("run")
        message = _str(data.get("message")) or "the run failed"
        if run == self.run_id:
            self.done = True
            if data.get("code") == "cancelled":
                return [*self._close(), {"type": "abort"}]
            return [*self._close(), {"type": "error", "errorText": message}]
        if isinstance(run, str) and run in self.runs:
            return [self._run_part(run, event, "failed")]
        return []

    # --- text and reasoning --------------------------------------------------------------

    def _text_start(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        mid = _str(event.get("message"))
        if not self.ours(event.get("run")) or mid is None:
            return []
        if mid in self.texts or mid in self.finished_texts:
            return []
        if data.get("role", "assistant") == "tool":
            self.finished_texts.add(mid)
            return []
        self.texts.add(mid)
        return [{"type": "text-start", "id": mid}]

    def _text_content(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        mid, delta = _str(event.get("message")), data.get("delta")
        if mid is None:
            return []
        out = [] if mid in self.texts else self._text_start(event, data)
        if mid not in self.texts or not isinstance(delta, str) or not delta:
            return out
        return [*out, {"type": "text-delta", "id": mid, "delta": delta}]

    def _text_end(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        mid = _str(event.get("message"))
        if mid is None or mid not in self.texts:
            return []
        self.texts.discard(mid)
        self.finished_texts.add(mid)
        return [{"type": "text-end", "id": mid}]

    def _reasoning(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        mid, kind = _str(event.get("message")), event["type"]
        if not self.ours(event.get("run")) or mid is None:
            return []
        if kind == "REASONING_MESSAGE_START":
            if mid in self.reasoning:
                return []
            self.reasoning.add(mid)
            return [{"type": "reasoning-start", "id": mid}]
        if mid not in self.reasoning:
            return []
        if kind == "REASONING_MESSAGE_CONTENT":
            delta = data.get("delta")
            if not isinstance(delta, str) or not delta:
                return []
            return [{"type": "reasoning-delta", "id": mid, "delta": delta}]
        self.reasoning.discard(mid)
        return [{"type": "reasoning-end", "id": mid}]

    # --- tools ---------------------------------------------------------------------------

    def _tool_start(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        call, name = _str(data.get("toolCallId")), _str(data.get("toolCallName"))
        if not self.ours(event.get("run")) or call is None or name is None or call in self.tools:
            return []
        self.tools[call] = (name, [])
        return [{"type": "tool-input-start", "toolCallId": call, "toolName": name,
                 "dynamic": True}]  # fmt: skip

    def _tool_args(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        call, delta = data.get("toolCallId"), data.get("delta")
        if not isinstance(call, str) or call not in self.tools or call in self.inputs_done:
            return []
        if not isinstance(delta, str) or not delta:
            return []
        self.tools[call][1].append(delta)
        return [{"type": "tool-input-delta", "toolCallId": call, "inputTextDelta": delta}]

    def _tool_end(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        call = data.get("toolCallId")
        if not isinstance(call, str) or call not in self.tools or call in self.inputs_done:
            return []
        self.inputs_done.add(call)
        name, parts = self.tools[call]
        text = "".join(parts)
        try:
            tool_input = json.loads(text) if text else {}
        except ValueError:
            tool_input = text  # not JSON: the client still sees what the agent sent
        return [{"type": "tool-input-available", "toolCallId": call, "toolName": name,
                 "input": tool_input, "dynamic": True}]  # fmt: skip

    def _tool_result(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        call = data.get("toolCallId")
        if not isinstance(call, str) or call not in self.tools:
            return []  # the client refuses output for a tool call it never saw
        out = [] if call in self.inputs_done else self._tool_end(event, data)
        return [*out, {"type": "tool-output-available", "toolCallId": call,
                       "output": data.get("content"), "dynamic": True}]  # fmt: skip

    # --- state, custom, control -----------------------------------------------------------

    def _state(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        run = event.get("run")
        if run is not None and not self.ours(run):
            return []
        if event.get("type") == "STATE_SNAPSHOT":
            self.state = data.get("snapshot")
        else:
            try:
                base = self.state if self.state is not None else {}
                self.state = apply_patch(base, data["delta"])
            except (PatchError, KeyError, TypeError):
                return []  # a patch that does not apply changes nothing (as in the fold)
        return [{"type": "data-state", "id": "state", "data": self.state}]

    def _custom(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        run, name = event.get("run"), _str(data.get("name"))
        if (run is not None and not self.ours(run)) or name is None:
            return []
        return [{"type": "data-custom", "data": {"name": name, "value": data.get("value")}}]

    def _control(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Chunk]:
        run = event.get("run")
        if run is not None and not self.ours(run):
            return []
        value: dict[str, Any] = {"type": event["type"]}
        value.update((key, val) for key, val in data.items() if val is not None)
        if run:
            value["run"] = run
        return [{"type": "data-control", "data": value, "transient": True}]


HANDLERS: Final = {
    "RUN_STARTED": UIStream._run_started,
    "RUN_FINISHED": UIStream._run_finished,
    "RUN_ERROR": UIStream._run_error,
    "TEXT_MESSAGE_START": UIStream._text_start,
    "TEXT_MESSAGE_CONTENT": UIStream._text_content,
    "TEXT_MESSAGE_CHUNK": UIStream._text_content,
    "TEXT_MESSAGE_END": UIStream._text_end,
    "REASONING_MESSAGE_START": UIStream._reasoning,
    "REASONING_MESSAGE_CONTENT": UIStream._reasoning,
    "REASONING_MESSAGE_END": UIStream._reasoning,
    "TOOL_CALL_START": UIStream._tool_start,
    "TOOL_CALL_ARGS": UIStream._tool_args,
    "TOOL_CALL_END": UIStream._tool_end,
    "TOOL_CALL_RESULT": UIStream._tool_result,
    "STATE_SNAPSHOT": UIStream._state,
    "STATE_DELTA": UIStream._state,
    "CUSTOM": UIStream._custom,
    "CANCEL": UIStream._control,
    "STEER": UIStream._control,
    "CONTROL_ACK": UIStream._control,
}


def error_chunks(message: str) -> list[Chunk]:
    """A stream that never started a message: only the error."""
    return [{"type": "error", "errorText": message}]


def sse(chunk: Mapping[str, Any]) -> str:
    """One chunk as an SSE event (LF framing, compact JSON)."""
    return f"data: {json.dumps(chunk, separators=(',', ':'), ensure_ascii=False)}\n\n"


def user_text(message: object) -> str | None:
    """The text of a ``UIMessage`` from the user (its text parts joined), or None."""
    if not isinstance(message, dict) or message.get("role") != "user":
        return None
    parts = message.get("parts")
    if not isinstance(parts, list):
        return None
    texts = [
        p["text"]
        for p in parts
        if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
    ]
    return "".join(texts) if texts else None
