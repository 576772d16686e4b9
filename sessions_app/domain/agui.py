"""Our session log seen as AG-UI 1.0 events: the pure half of the AG-UI door.

A door stream follows one top-level run of a session (the agent's answer to the message the
door appended) and the sub-runs under it. ``RunStream`` turns each log event into the AG-UI
events a real client accepts: it keeps the client's ordering rules (nothing before
RUN_STARTED, nothing after RUN_FINISHED, every message, tool call, step, reasoning block and
sub-agent closed before the run ends) whatever the log holds, because the log may hold a run
that was cancelled half-way or an agent that never ended a message.

Mapping (log → AG-UI):

- the top-level run → RUN_STARTED / RUN_FINISHED (``outcome``) / RUN_ERROR; a cancelled run
  is ``RUN_FINISHED {outcome: {type: cancelled}}`` for 1.0 clients and
  ``RUN_ERROR {code: cancelled}`` for clients that sent no ``protocolVersion``;
- a sub-run (``parentRunId`` inside the tree) → SUBAGENT_STARTED / SUBAGENT_FINISHED /
  SUBAGENT_ERROR, its events carrying ``subagentRunId``; a cancelled sub-run →
  SUBAGENT_ERROR ``{code: cancelled}`` (SUBAGENT_FINISHED knows no cancelled outcome);
- TEXT_MESSAGE_*, TOOL_CALL_*, STATE_*, STEP_*, REASONING_*, RAW, CUSTOM → the same names;
  TEXT_MESSAGE_CHUNK → START (if needed) + CONTENT;
- our live control (CANCEL, STEER, CONTROL_ACK) → CUSTOM events named ``sessions.CANCEL``...
  (namespaced, as AG-UI asks of custom names, so they cannot collide with an agent's own);
- ``time`` → ``timestamp``; the offset is never in the event (the door puts it in ``id:``).

Not mapped (skipped, see docs/sessions/agui.md): MESSAGES_SNAPSHOT written into the log,
messages with role ``tool``, events of other runs, user messages of other devices.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sessions_app.domain.fold import STREAMING, SessionState
from sessions_app.domain.runs import RunStatus

PROTOCOL_VERSION: Final = "1.0"
TEXT_ROLES: Final = frozenset({"assistant", "user", "system", "developer"})
SNAPSHOT_ROLES: Final = frozenset({"assistant", "user", "system", "developer"})
CONTROL: Final = frozenset({"CANCEL", "STEER", "CONTROL_ACK"})
CONTROL_NAMESPACE: Final = "sessions."
Event = dict[str, Any]


def _data(event: Mapping[str, Any]) -> Mapping[str, Any]:
    data = event.get("data")
    return data if isinstance(data, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass
class RunStream:
    """Maps the events of one top-level run (and its sub-runs) to AG-UI events.

    ``legacy``: the client sent no ``protocolVersion`` (pre-1.0), so a cancelled run ends
    with ``RUN_ERROR {code: cancelled}`` instead of the 1.0 ``cancelled`` outcome.
    """

    thread_id: str
    run_id: str
    legacy: bool = False
    done: bool = False
    parents: dict[str, str | None] = field(default_factory=dict)  # sub-run -> parent sub-run
    ended: set[str] = field(default_factory=set)  # sub-runs that ended
    messages: dict[str, str | None] = field(default_factory=dict)  # open message -> owner
    tools: dict[str, str | None] = field(default_factory=dict)  # open tool call -> owner
    steps: dict[tuple[str, str | None], None] = field(default_factory=dict)
    reasoning: dict[str, str | None] = field(default_factory=dict)  # open reasoning messages
    spans: dict[str, str | None] = field(default_factory=dict)  # open reasoning spans
    closed_messages: set[str] = field(default_factory=set)

    # --- the run's edges -----------------------------------------------------------------

    def run_started(self, time: int | None = None) -> Event:
        event: Event = {"type": "RUN_STARTED", "threadId": self.thread_id, "runId": self.run_id}
        if not self.legacy:
            event["protocolVersion"] = PROTOCOL_VERSION
        return _stamped(event, time)

    def owner(self, run: object) -> str | None | Literal[False]:
        """The ``subagentRunId`` of events of ``run``: None for the top-level run, the sub-run's
        id for a live sub-run, False for anything else (not part of this stream)."""
        if run == self.run_id:
            return None
        if isinstance(run, str) and run in self.parents and run not in self.ended:
            return run
        return False

    # --- one log event -------------------------------------------------------------------

    def feed(self, event: Mapping[str, Any]) -> list[Event]:
        """The AG-UI events for one log event (often none); sets ``done`` at the run's end."""
        if self.done:
            return []
        kind = event.get("type")
        handler = HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return []
        time = event.get("time") if isinstance(event.get("time"), int) else None
        return [_stamped(out, time) for out in handler(self, event, _data(event))]

    def fail(self, message: str, code: str) -> list[Event]:
        """End the stream with ``RUN_ERROR`` (what is open is closed first)."""
        if self.done:
            return []
        return self._end_run({"type": "RUN_ERROR", "message": message, "code": code})

    def feed_all(self, events: Iterable[Mapping[str, Any]]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            out += self.feed(event)
        return out

    # --- closing what is open --------------------------------------------------------------

    def _close(self, owners: set[str | None]) -> list[Event]:
        """End every message, tool call, reasoning block and step owned by ``owners``."""
        out: list[Event] = []
        for mid, who in list(self.messages.items()):
            if who in owners:
                out.append(_owned({"type": "TEXT_MESSAGE_END", "messageId": mid}, who))
                del self.messages[mid]
                self.closed_messages.add(mid)
        for call, who in list(self.tools.items()):
            if who in owners:
                out.append(_owned({"type": "TOOL_CALL_END", "toolCallId": call}, who))
                del self.tools[call]
        for mid, who in list(self.reasoning.items()):
            if who in owners:
                out.append(_owned({"type": "REASONING_MESSAGE_END", "messageId": mid}, who))
                del self.reasoning[mid]
        for mid, who in list(self.spans.items()):
            if who in owners:
                out.append(_owned({"type": "REASONING_END", "messageId": mid}, who))
                del self.spans[mid]
        for name, who in list(self.steps):
            if who in owners:
                out.append(_owned({"type": "STEP_FINISHED", "stepName": name}, who))
                del self.steps[(name, who)]
        return out

    def _descendants(self, run: str) -> list[str]:
        """Live sub-runs under ``run``, deepest first."""
        found: list[str] = []
        for child, parent in self.parents.items():
            if parent == run and child not in self.ended:
                found += [*self._descendants(child), child]
        return found

    def _end_subagent(self, sub: str, ending: Event) -> list[Event]:
        out: list[Event] = []
        for child in self._descendants(sub):
            out += self._end_subagent(
                child,
                {"type": "SUBAGENT_ERROR", "subagentRunId": child,
                 "message": "its parent run ended first", "code": "cancelled"},
            )  # fmt: skip
        out += self._close({sub})
        self.ended.add(sub)
        return [*out, ending]

    def _end_run(self, ending: Event) -> list[Event]:
        out: list[Event] = []
        top = [child for child, parent in self.parents.items() if parent is None]
        for sub in top:
            if sub not in self.ended:
                out += self._end_subagent(
                    sub,
                    {"type": "SUBAGENT_ERROR", "subagentRunId": sub,
                     "message": "the run ended first", "code": "cancelled"},
                )  # fmt: skip
        out += self._close({None})
        self.done = True
        return [*out, ending]

    # --- handlers ----------------------------------------------------------------------------

    def _run_started(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        run, parent = event.get("run"), data.get("parentRunId")
        if run == self.run_id or not isinstance(run, str) or run in self.parents:
            return []
        owner = self.owner(parent)
        if owner is False:
            return []
        self.parents[run] = owner if isinstance(owner, str) else None
        out: Event = {"type": "SUBAGENT_STARTED", "subagentRunId": run,
                      "name": _str(event.get("agent")) or run}  # fmt: skip
        if isinstance(owner, str):
            out["parentSubagentRunId"] = owner
        return [out]

    def _run_finished(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        owner = self.owner(event.get("run"))
        if owner is False:
            return []
        cancelled = data.get("outcome") == "cancelled"
        if owner is None:
            if cancelled and self.legacy:
                return self._end_run(
                    {"type": "RUN_ERROR", "message": "the run was cancelled", "code": "cancelled"}
                )
            ending: Event = {"type": "RUN_FINISHED", "threadId": self.thread_id,
                             "runId": self.run_id}  # fmt: skip
            if not self.legacy:
                ending["outcome"] = {"type": "cancelled" if cancelled else "success"}
            return self._end_run(ending)
        assert isinstance(owner, str)
        if cancelled:
            return self._end_subagent(
                owner, {"type": "SUBAGENT_ERROR", "subagentRunId": owner,
                        "message": "the sub-agent was cancelled", "code": "cancelled"},
            )  # fmt: skip
        return self._end_subagent(
            owner, {"type": "SUBAGENT_FINISHED", "subagentRunId": owner,
                    "outcome": {"type": "success"}},
        )  # fmt: skip

    def _run_error(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        owner = self.owner(event.get("run"))
        if owner is False:
            return []
        message = data.get("message") if isinstance(data.get("message"), str) else "run failed"
        code = _str(data.get("code"))
        if owner is None:
            ending: Event = {"type": "RUN_ERROR", "message": message}
            if code:
                ending["code"] = code
            return self._end_run(ending)
        assert isinstance(owner, str)
        sub: Event = {"type": "SUBAGENT_ERROR", "subagentRunId": owner, "message": message}
        if code:
            sub["code"] = code
        return self._end_subagent(owner, sub)

    def _text_start(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        owner, mid = self.owner(event.get("run")), _str(event.get("message"))
        role = data.get("role", "assistant")
        if owner is False or mid is None or mid in self.messages or mid in self.closed_messages:
            return []
        if role not in TEXT_ROLES:
            self.closed_messages.add(mid)  # a tool-role message: AG-UI has no text for it
            return []
        self.messages[mid] = owner
        return [_owned({"type": "TEXT_MESSAGE_START", "messageId": mid, "role": role}, owner)]

    def _text_content(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        mid, delta = _str(event.get("message")), data.get("delta")
        if mid is None or mid in self.closed_messages:
            return []
        out = [] if mid in self.messages else self._text_start(event, data)
        if mid not in self.messages or not isinstance(delta, str) or not delta:
            return out
        owner = self.messages[mid]
        return [*out, _owned({"type": "TEXT_MESSAGE_CONTENT", "messageId": mid, "delta": delta},
                             owner)]  # fmt: skip

    def _text_end(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        mid = _str(event.get("message"))
        if mid is None or mid not in self.messages:
            return []
        owner = self.messages.pop(mid)
        self.closed_messages.add(mid)
        return [_owned({"type": "TEXT_MESSAGE_END", "messageId": mid}, owner)]

    def _tool_start(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        owner, call, name = (
            self.owner(event.get("run")),
            data.get("toolCallId"),
            data.get("toolCallName"),
        )
        if owner is False or not _str(call) or not _str(name) or call in self.tools:
            return []
        assert isinstance(call, str)
        self.tools[call] = owner
        out: Event = {"type": "TOOL_CALL_START", "toolCallId": call, "toolCallName": name}
        parent = _str(data.get("parentMessageId")) or _str(event.get("message"))
        if parent:
            out["parentMessageId"] = parent
        return [_owned(out, owner)]

    def _tool_args(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        call, delta = data.get("toolCallId"), data.get("delta")
        if call not in self.tools or not isinstance(delta, str):
            return []
        return [_owned({"type": "TOOL_CALL_ARGS", "toolCallId": call, "delta": delta},
                       self.tools[call])]  # fmt: skip

    def _tool_end(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        call = data.get("toolCallId")
        if call not in self.tools:
            return []
        owner = self.tools.pop(call)
        return [_owned({"type": "TOOL_CALL_END", "toolCallId": call}, owner)]

    def _tool_result(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        owner, call, content = (
            self.owner(event.get("run")),
            data.get("toolCallId"),
            data.get("content"),
        )
        if owner is False or not _str(call) or not isinstance(content, str):
            return []
        mid = _str(event.get("message")) or f"{call}-result"
        return [_owned({"type": "TOOL_CALL_RESULT", "messageId": mid, "toolCallId": call,
                        "content": content, "role": "tool"}, owner)]  # fmt: skip

    def _state(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        run = event.get("run")
        if run is not None and self.owner(run) is False:
            return []
        if event.get("type") == "STATE_SNAPSHOT":
            return [{"type": "STATE_SNAPSHOT", "snapshot": data.get("snapshot")}]
        return [{"type": "STATE_DELTA", "delta": data.get("delta")}]

    def _step(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        owner, name = self.owner(event.get("run")), _str(data.get("stepName"))
        if owner is False or name is None:
            return []
        assert not isinstance(owner, bool)
        key = (name, owner)
        if event.get("type") == "STEP_STARTED":
            if key in self.steps:
                return []
            self.steps[key] = None
            return [_owned({"type": "STEP_STARTED", "stepName": name}, owner)]
        if key not in self.steps:
            return []
        del self.steps[key]
        return [_owned({"type": "STEP_FINISHED", "stepName": name}, owner)]

    def _reasoning(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        owner, mid, kind = self.owner(event.get("run")), _str(event.get("message")), event["type"]
        if owner is False or mid is None:
            return []
        assert not isinstance(owner, bool)
        table = self.spans if kind in ("REASONING_START", "REASONING_END") else self.reasoning
        if kind in ("REASONING_START", "REASONING_MESSAGE_START"):
            if mid in table:
                return []
            table[mid] = owner
            out: Event = {"type": kind, "messageId": mid}
            if kind == "REASONING_MESSAGE_START":
                out["role"] = "reasoning"
            return [_owned(out, owner)]
        if mid not in table:
            return []
        if kind == "REASONING_MESSAGE_CONTENT":
            delta = data.get("delta")
            if not isinstance(delta, str) or not delta:
                return []
            return [_owned({"type": kind, "messageId": mid, "delta": delta}, table[mid])]
        return [_owned({"type": kind, "messageId": mid}, table.pop(mid))]

    def _raw(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        owner = self.owner(event.get("run")) if event.get("run") else None
        if owner is False or data.get("event") is None:
            return []
        out: Event = {"type": "RAW", "event": data["event"]}
        if _str(data.get("source")):
            out["source"] = data["source"]
        return [_owned(out, owner)]

    def _custom(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        owner = self.owner(event.get("run")) if event.get("run") else None
        name = _str(data.get("name"))
        if owner is False or name is None:
            return []
        return [_owned({"type": "CUSTOM", "name": name, "value": data.get("value")}, owner)]

    def _control(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> list[Event]:
        run = event.get("run")
        owner = self.owner(run) if run else None
        if owner is False:
            return []
        value = {key: val for key, val in data.items() if val is not None}
        if run:
            value["run"] = run
        name = CONTROL_NAMESPACE + event["type"]
        return [_owned({"type": "CUSTOM", "name": name, "value": value}, owner)]


def _owned(event: Event, owner: str | None) -> Event:
    if isinstance(owner, str):
        event["subagentRunId"] = owner
    return event


def _stamped(event: Event, time: int | None) -> Event:
    if time is not None and "timestamp" not in event:
        event["timestamp"] = time
    return event


HANDLERS: Final = {
    "RUN_STARTED": RunStream._run_started,
    "RUN_FINISHED": RunStream._run_finished,
    "RUN_ERROR": RunStream._run_error,
    "TEXT_MESSAGE_START": RunStream._text_start,
    "TEXT_MESSAGE_CONTENT": RunStream._text_content,
    "TEXT_MESSAGE_CHUNK": RunStream._text_content,
    "TEXT_MESSAGE_END": RunStream._text_end,
    "TOOL_CALL_START": RunStream._tool_start,
    "TOOL_CALL_ARGS": RunStream._tool_args,
    "TOOL_CALL_END": RunStream._tool_end,
    "TOOL_CALL_RESULT": RunStream._tool_result,
    "STATE_SNAPSHOT": RunStream._state,
    "STATE_DELTA": RunStream._state,
    "STEP_STARTED": RunStream._step,
    "STEP_FINISHED": RunStream._step,
    "REASONING_START": RunStream._reasoning,
    "REASONING_MESSAGE_START": RunStream._reasoning,
    "REASONING_MESSAGE_CONTENT": RunStream._reasoning,
    "REASONING_MESSAGE_END": RunStream._reasoning,
    "REASONING_END": RunStream._reasoning,
    "RAW": RunStream._raw,
    "CUSTOM": RunStream._custom,
    "CANCEL": RunStream._control,
    "STEER": RunStream._control,
    "CONTROL_ACK": RunStream._control,
}


# --- reconnecting: the folded state as a continuation ------------------------------------------


def run_tree(state: SessionState, run_id: str) -> dict[str, str | None]:
    """Sub-runs of ``run_id`` in the folded state, each with its parent sub-run (None: the run)."""
    tree: dict[str, str | None] = {}
    changed = True
    while changed:
        changed = False
        for run in state.runs.values():
            if run.id in tree or run.id == run_id or run.parent is None:
                continue
            if run.parent == run_id or run.parent in tree:
                tree[run.id] = None if run.parent == run_id else run.parent
                changed = True
    return tree


def messages_snapshot(state: SessionState, run_id: str | None = None) -> Event:
    """MESSAGES_SNAPSHOT of every message folded so far (sub-runs' carry ``subagentRunId``)."""
    subs = run_tree(state, run_id) if run_id else {}
    messages = []
    for message in state.messages.values():
        if message.role not in SNAPSHOT_ROLES:
            continue
        item: Event = {"id": message.id, "role": message.role, "content": message.text}
        if message.run in subs:
            item["subagentRunId"] = message.run
        messages.append(item)
    return {"type": "MESSAGES_SNAPSHOT", "messages": messages}


def continuation(
    state: SessionState, thread_id: str, run_id: str, *, legacy: bool = False
) -> tuple[RunStream, list[Event]]:
    """Resume run ``run_id`` from the folded ``state``: the events that bring a fresh client
    to where the log stands (RUN_STARTED, MESSAGES_SNAPSHOT, STATE_SNAPSHOT, the sub-agents
    still running, the partial messages reopened under their own ids), and the stream that
    maps what comes next. The snapshot carries each partial message's text so far, so the
    deltas that follow complete it exactly once.
    """
    stream = RunStream(thread_id, run_id, legacy=legacy)
    out = [stream.run_started(), messages_snapshot(state, run_id)]
    if state.state is not None:
        out.append({"type": "STATE_SNAPSHOT", "snapshot": state.state})
    run = state.runs.get(run_id)
    tree = run_tree(state, run_id)
    for sub, parent in tree.items():
        sub_state = state.runs[sub]
        stream.parents[sub] = parent
        # A sub-run whose parent ended is over for the client too (live, the parent's end
        # ended it); announcing it under a parent the client never saw start would leave it
        # open when the run ends. ``run_tree`` lists parents before their children.
        if sub_state.status.is_final or (parent is not None and parent in stream.ended):
            stream.ended.add(sub)
            continue
        started: Event = {"type": "SUBAGENT_STARTED", "subagentRunId": sub,
                          "name": sub_state.agent or sub}  # fmt: skip
        if parent is not None:
            started["parentSubagentRunId"] = parent
        out.append(started)
    for message in state.messages.values():
        owner = stream.owner(message.run)
        if owner is False:
            continue
        if message.status != STREAMING or message.role not in TEXT_ROLES:
            stream.closed_messages.add(message.id)
            continue
        stream.messages[message.id] = owner if isinstance(owner, str) else None
        out.append(
            _owned({"type": "TEXT_MESSAGE_START", "messageId": message.id, "role": message.role},
                   owner)
        )  # fmt: skip
    if run is not None and run.status.is_final:
        out += stream.feed(_final_event(run_id, run.status, run.error))
    return stream, out


def _final_event(run_id: str, status: RunStatus, error: str | None) -> Event:
    if status is RunStatus.FAILED:
        return {"type": "RUN_ERROR", "run": run_id, "data": {"message": error or "run failed"}}
    outcome = "cancelled" if status is RunStatus.CANCELLED else "success"
    return {"type": "RUN_FINISHED", "run": run_id, "data": {"outcome": outcome}}


def sse(event: Mapping[str, Any], offset: str | None = None) -> str:
    """One SSE event, LF framing; ``offset`` (if any) in the ``id:`` line."""
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    head = f"id: {offset}\n" if offset else ""
    return f"{head}data: {body}\n\n"
