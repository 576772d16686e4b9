"""Protocol readers of the delivery audit: SSE events -> what the protocol's client holds.

Pure (standard library only), so the probes stay thin and each reader is unit-tested on bytes
written by hand (tests/sessions_app/domain/test_audit.py). Everything here comes from the endpoint
under audit and is hostile: lines, events and the text kept are bounded, bad JSON is text,
nothing is evaluated.

A reader folds events into :class:`Held`, the state a real client of that protocol would hold:
the AI SDK client replaces a message that a resumed stream starts again under the same id, an
AG-UI client merges a ``MESSAGES_SNAPSHOT`` by message id, a plain SSE client just appends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sessions_app.domain.upstream import SSEDecoder, SSEEvent, UpstreamError

MAX_TEXT = 1 << 20  # characters of answer text kept
MAX_PROGRESS = 64  # distinct progress kinds kept

# The SSE framing is the gateway's decoder (one parser of text/event-stream in the project);
# its bound on one event's size raises UpstreamError, which the probes report.
__all__ = ["READERS", "Held", "SSEDecoder", "SSEEvent", "UpstreamError", "size"]


def size(event: SSEEvent) -> int:
    """Bytes the event took on the wire, near enough (its data and name)."""
    return len(event.data.encode("utf-8", errors="replace")) + len(event.event) + 8


@dataclass
class Held:
    """What the protocol's client holds: assistant messages by id (in order), and the stream's
    end. ``mine`` is the user message id the audit sent (AG-UI snapshots: what follows it is
    this answer's)."""

    messages: dict[str, str] = field(default_factory=dict)
    ended: bool = False
    outcome: str = ""
    run_id: str = ""
    message_id: str = ""
    progress: list[str] = field(default_factory=list)
    text_events: int = 0
    mine: str = ""
    steps: int = 0
    why: str = ""  # the endpoint's own words when the stream ended in an error
    runs: set[str] = field(default_factory=set)  # ws: the followed run and its sub-runs
    asked: bool = False  # ws: the audit's own user message has been seen
    last_offset: str = ""  # ws: the browser client drops what it already folded

    @property
    def text(self) -> str:
        return "".join(self.messages.values())

    @property
    def answers(self) -> int:
        return len(self.messages)

    def append(self, message: str, delta: str) -> None:
        if not isinstance(delta, str) or not delta:
            return
        current = self.messages.get(message, "")
        if len(self.text) + len(delta) > MAX_TEXT:
            delta = delta[: max(0, MAX_TEXT - len(self.text))]
        self.messages[message] = current + delta
        self.text_events += 1

    def failed(self, *words: Any) -> None:
        self.ended, self.outcome = True, "error"
        self.why = " ".join(str(w) for w in words if isinstance(w, (str, int)) and w)[:200]

    def saw(self, kind: str) -> None:
        kind = kind[:60]
        if kind not in self.progress and len(self.progress) < MAX_PROGRESS:
            self.progress.append(kind)

    def copy(self) -> Held:
        return Held(
            dict(self.messages),
            mine=self.mine,
            run_id=self.run_id,
            message_id=self.message_id,
            runs=set(self.runs),
            asked=self.asked,
            last_offset=self.last_offset,
        )


def _json(data: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- plain SSE chat -------------------------------------------------------------------------

TEXT_KEYS = ("delta", "text", "content", "token", "message")
END_NAMES = {"done", "end", "finish", "finished", "complete", "completed", "[done]"}
PROGRESS_WORDS = ("tool", "step", "agent", "progress", "status", "reasoning", "thinking")


def _openai_delta(obj: dict[str, Any]) -> tuple[str, list[str], str]:
    """(text, progress kinds, finish reason) of one chat.completion.chunk."""
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "", [], ""
    choice = choices[0]
    delta: dict[str, Any] = choice["delta"] if isinstance(choice.get("delta"), dict) else {}
    kinds = ["tool_calls"] if delta.get("tool_calls") else []
    if delta.get("reasoning_content") or delta.get("reasoning"):
        kinds.append("reasoning")
    return _str(delta.get("content")), kinds, _str(choice.get("finish_reason"))


def read_sse(held: Held, event: SSEEvent) -> None:
    """A chat that streams text over SSE in whatever shape: JSON with a text field, an
    OpenAI chunk, or plain text."""
    if event.data.strip() == "[DONE]" or event.event.lower() in END_NAMES:
        held.ended = True
        held.outcome = held.outcome or "finished"
        return
    if event.event.lower() == "error":
        held.failed(event.data)
        return
    obj = _json(event.data)
    if not isinstance(obj, dict):
        held.append("answer", event.data if obj is None else str(obj))
        return
    if "choices" in obj:
        text, kinds, finish = _openai_delta(obj)
        held.append("answer", text)
        for kind in kinds:
            held.saw(kind)
        return
    kind = _str(obj.get("type") or obj.get("event")).lower()
    if kind in END_NAMES:
        held.ended, held.outcome = True, "finished"
        return
    if any(word in kind for word in PROGRESS_WORDS):
        held.saw(kind)
    for key in TEXT_KEYS:
        if isinstance(obj.get(key), str):
            held.append("answer", obj[key])
            return


def read_openai(held: Held, event: SSEEvent) -> None:
    """OpenAI-compatible chat completions (``stream: true``)."""
    if event.data.strip() == "[DONE]":
        held.ended = True
        held.outcome = held.outcome or "finished"
        return
    obj = _json(event.data)
    if not isinstance(obj, dict):
        return
    if isinstance(obj.get("error"), dict):
        held.failed(obj["error"].get("code"), obj["error"].get("message"))
        return
    text, kinds, finish = _openai_delta(obj)
    held.append("answer", text)
    for kind in kinds:
        held.saw(kind)
    if finish:
        held.outcome = "finished" if finish in ("stop", "length", "tool_calls") else finish


# --- the Vercel AI SDK UI message stream ----------------------------------------------------

AISDK_PROGRESS = ("tool-", "reasoning-", "data-", "source-", "file")


def read_aisdk(held: Held, event: SSEEvent) -> None:
    if event.data.strip() == "[DONE]":
        held.ended = True
        return
    obj = _json(event.data)
    if not isinstance(obj, dict):
        return
    kind = _str(obj.get("type"))
    if kind == "start":
        message = _str(obj.get("messageId")) or held.message_id or "answer"
        held.message_id = message
        held.messages[message] = ""  # the client replaces a message started again
    elif kind == "text-delta":
        held.append(held.message_id or "answer", _str(obj.get("delta")))
    elif kind == "finish":
        held.ended, held.outcome = True, "finished"
    elif kind == "abort":
        held.ended, held.outcome = True, "cancelled"
    elif kind == "error":
        held.failed(obj.get("errorText"))
    elif kind == "start-step":
        held.steps += 1
        if held.steps > 1:
            held.saw("step")
    elif kind.startswith(AISDK_PROGRESS) and kind != "data-control":
        held.saw(kind)


# --- AG-UI ----------------------------------------------------------------------------------

AGUI_PROGRESS = ("TOOL_CALL_", "STEP_", "SUBAGENT_", "REASONING", "STATE_", "ACTIVITY")


def read_agui(held: Held, event: SSEEvent) -> None:
    obj = _json(event.data)
    if not isinstance(obj, dict):
        return
    kind = _str(obj.get("type"))
    if kind == "RUN_STARTED":
        held.run_id = held.run_id or _str(obj.get("runId"))
    elif kind in ("TEXT_MESSAGE_START", "TEXT_MESSAGE_CHUNK", "TEXT_MESSAGE_CONTENT"):
        _agui_text(held, obj)
    elif kind == "MESSAGES_SNAPSHOT":
        _agui_snapshot(held, obj.get("messages"))
    elif kind == "RUN_FINISHED":
        held.ended = True
        outcome = obj.get("outcome")
        cancelled = isinstance(outcome, dict) and outcome.get("type") == "cancelled"
        held.outcome = "cancelled" if cancelled else "finished"
    elif kind == "RUN_ERROR":
        held.ended = True
        held.outcome = "cancelled" if obj.get("code") == "cancelled" else "error"
        if held.outcome == "error":
            held.failed(obj.get("code"), obj.get("message"))
    elif kind.startswith(AGUI_PROGRESS):
        held.saw(kind)


def _agui_text(held: Held, obj: dict[str, Any]) -> None:
    message = _str(obj.get("messageId"))
    if not message or obj.get("role") not in (None, "assistant"):
        return
    if "subagentRunId" in obj:
        held.saw("SUBAGENT_MESSAGE")
    held.messages.setdefault(message, "")
    held.append(message, _str(obj.get("delta")))


def _agui_snapshot(held: Held, messages: Any) -> None:
    """Merge by id the assistant messages after the audit's own user message (earlier history
    is another answer's)."""
    if not isinstance(messages, list):
        return
    ours = not held.mine or not any(
        isinstance(m, dict) and m.get("id") == held.mine for m in messages
    )
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("id") == held.mine:
            ours = True
            continue
        mid, content = _str(message.get("id")), message.get("content")
        if ours and message.get("role") == "assistant" and mid and isinstance(content, str):
            held.messages[mid] = content[:MAX_TEXT]


# --- this project's WebSocket door (our event vocabulary) -----------------------------------

LOG_PROGRESS = ("TOOL_CALL_", "STEP_", "REASONING", "STATE_")
RUN_ENDS = {"finished", "cancelled", "failed"}


def read_log(held: Held, event: Any) -> None:
    """One event of a session log, as the browser client folds it: duplicates dropped by
    offset; the first top-level run after the audit's own message is the answer; its
    sub-runs' messages are part of it."""
    if not isinstance(event, dict):
        return
    offset = _str(event.get("offset"))
    if offset and held.last_offset and offset <= held.last_offset:
        return
    held.last_offset = offset or held.last_offset
    kind, run = _str(event.get("type")), _str(event.get("run"))
    data: dict[str, Any] = event["data"] if isinstance(event.get("data"), dict) else {}
    if kind == "TEXT_MESSAGE_START" and data.get("role") == "user":
        held.asked = held.asked or event.get("message") == held.mine
    elif kind == "RUN_STARTED":
        _log_run(held, run, _str(data.get("parentRunId")))
    elif run not in held.runs:
        return
    elif kind in ("TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CHUNK"):
        message = _str(event.get("message"))
        if message and data.get("role") in (None, "assistant"):
            held.messages.setdefault(message, "")
            held.append(message, _str(data.get("delta")))
    elif kind in ("RUN_FINISHED", "RUN_ERROR") and run == held.run_id:
        held.ended = True
        cancelled = data.get("outcome") == "cancelled" or data.get("code") == "cancelled"
        held.outcome = (
            "cancelled" if cancelled else "finished" if kind == "RUN_FINISHED" else "error"
        )
        if held.outcome == "error":
            held.failed(data.get("code"), data.get("message"))
    elif kind.startswith(LOG_PROGRESS):
        held.saw(kind)


def _log_run(held: Held, run: str, parent: str) -> None:
    if parent and parent in held.runs:
        held.runs.add(run)
        held.saw("SUB_AGENT_RUN")
    elif not parent and not held.run_id and (held.asked or not held.mine):
        held.run_id = run
        held.runs.add(run)


def read_snapshot(held: Held, state: Any) -> None:
    """A ``snapshot`` frame's folded state: the answer after the audit's own message."""
    if not isinstance(state, dict):
        return
    messages = [m for m in state.get("messages") or [] if isinstance(m, dict)]
    runs = [r for r in state.get("runs") or [] if isinstance(r, dict)]
    parents = {_str(r.get("id")): _str(r.get("parent")) for r in runs}
    after = _after_mine(held, messages)
    if not held.run_id:
        top = [_str(m.get("run")) for m in after if m.get("run") and not parents.get(m["run"])]
        if not top:
            return
        held.run_id = top[0]
    held.runs.add(held.run_id)
    for run, parent in parents.items():  # sub-runs, whatever their depth
        chain, seen = parent, set()
        while chain and chain not in held.runs and chain not in seen:
            seen.add(chain)
            chain = parents.get(chain, "")
        if chain in held.runs:
            held.runs.add(run)
    for m in after:
        if m.get("run") in held.runs and m.get("role") == "assistant":
            held.messages[_str(m.get("id"))] = _str(m.get("text"))[:MAX_TEXT]
    status = next((_str(r.get("status")) for r in runs if r.get("id") == held.run_id), "")
    if status in RUN_ENDS:
        held.ended = True
        held.outcome = {"finished": "finished", "cancelled": "cancelled"}.get(status, "error")


def _after_mine(held: Held, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages after the audit's own (all of them when the audit sent none)."""
    if not held.mine:
        return messages
    after = []
    for message in messages:
        if held.asked:
            after.append(message)
        elif message.get("id") == held.mine:
            held.asked = True
    return after


READERS = {"sse": read_sse, "openai": read_openai, "aisdk": read_aisdk, "agui": read_agui}
