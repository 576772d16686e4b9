"""Fold a session's events into its current state.

The fold is what a late joiner sees instead of the history: messages with their full text and
status, runs with their status, and the agent's shared state. It is a pure left fold, so the
server (snapshots, compaction) and the tests share one definition, and it is total: an event
that does not fit (a delta for an unknown message, an illegal run transition, a bad patch) is
skipped, never an error, because the log may hold anything a producer once wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sessions_app.domain.jsonpatch import PatchError, apply_patch
from sessions_app.domain.judgement import FEEDBACK, RATINGS, USAGE, add_usage
from sessions_app.domain.runs import RunStatus

STREAMING = "streaming"
COMPLETE = "complete"
CANCELLED = "cancelled"
FAILED = "failed"


@dataclass
class MessageState:
    id: str
    role: str
    run: str | None
    agent: str | None
    status: str = STREAMING
    parts: list[str] = field(default_factory=list)
    feedback: dict[str, dict[str, Any]] = field(default_factory=dict)  # by user

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "run": self.run,
            "agent": self.agent,
            "status": self.status,
            "text": self.text,
            **({"feedback": self.feedback} if self.feedback else {}),
        }


@dataclass
class RunState:
    id: str
    status: RunStatus
    parent: str | None = None
    agent: str | None = None
    outcome: str | None = None
    error: str | None = None
    reason: str | None = None
    usage: dict[str, Any] | None = None  # summed reports (domain.judgement.add_usage)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "parent": self.parent,
            "agent": self.agent,
            "outcome": self.outcome,
            "error": self.error,
            "reason": self.reason,
            **({"usage": self.usage} if self.usage is not None else {}),
        }


@dataclass
class SessionState:
    """The folded state of a session up to and including entry ``seq``."""

    seq: int = 0
    messages: dict[str, MessageState] = field(default_factory=dict)
    runs: dict[str, RunState] = field(default_factory=dict)
    state: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": [m.as_dict() for m in self.messages.values()],
            "runs": [r.as_dict() for r in self.runs.values()],
            "state": self.state,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], seq: int) -> SessionState:
        """Rebuild a stored snapshot (the inverse of ``as_dict``)."""
        folded = cls(seq=seq, state=raw.get("state"))
        for m in raw.get("messages", []):
            folded.messages[m["id"]] = MessageState(
                id=m["id"], role=m["role"], run=m.get("run"), agent=m.get("agent"),
                status=m["status"], parts=[m["text"]] if m["text"] else [],
                feedback=dict(m.get("feedback") or {}),
            )  # fmt: skip
        for r in raw.get("runs", []):
            folded.runs[r["id"]] = RunState(
                id=r["id"], status=RunStatus(r["status"]), parent=r.get("parent"),
                agent=r.get("agent"), outcome=r.get("outcome"), error=r.get("error"),
                reason=r.get("reason"), usage=r.get("usage"),
            )  # fmt: skip
        return folded


def _message(state: SessionState, event: Mapping[str, Any], role: str | None) -> MessageState:
    mid = event["message"]
    message = state.messages.get(mid)
    if message is None:
        message = MessageState(
            id=mid, role=role or "assistant", run=event.get("run"), agent=event.get("agent")
        )
        state.messages[mid] = message
    return message


def _set_run(state: SessionState, run_id: str | None, status: RunStatus, **extra: Any) -> None:
    if not run_id:
        return
    run = state.runs.get(run_id)
    if run is None or not run.status.can_become(status):
        return
    run.status = status
    for key, value in extra.items():
        setattr(run, key, value)
    if status.is_final:
        _close_messages(state, run_id, CANCELLED if status is RunStatus.CANCELLED else FAILED)


def _close_messages(state: SessionState, run_id: str, status: str) -> None:
    # A run that was cancelled or failed keeps its partial messages, marked as such.
    for message in state.messages.values():
        if message.run == run_id and message.status == STREAMING:
            message.status = status


def _run_started(state: SessionState, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    run_id = event["run"]
    if run_id not in state.runs:
        parent = data.get("parentRunId")
        state.runs[run_id] = RunState(
            id=run_id,
            status=RunStatus.RUNNING,
            parent=parent if isinstance(parent, str) else None,
            agent=event.get("agent"),
        )


def _run_finished(state: SessionState, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    run_id = event.get("run")
    if data.get("outcome") == "cancelled":
        reason = data.get("reason")
        _set_run(
            state,
            run_id,
            RunStatus.CANCELLED,
            outcome="cancelled",
            reason=reason if isinstance(reason, str) else None,
        )
        return
    run = state.runs.get(run_id) if run_id else None
    if run is not None and run.status.can_become(RunStatus.FINISHED):
        run.status, run.outcome = RunStatus.FINISHED, "success"
        for message in state.messages.values():
            if message.run == run_id and message.status == STREAMING:
                message.status = COMPLETE


def _run_error(state: SessionState, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    code = data.get("code")
    if code == "cancelled":
        _set_run(state, event.get("run"), RunStatus.CANCELLED, outcome="cancelled")
    else:
        _set_run(state, event.get("run"), RunStatus.FAILED, error=str(data.get("message", "")))


def _text_start(state: SessionState, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    _message(state, event, data.get("role"))


def _text_content(state: SessionState, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    message = _message(state, event, data.get("role"))
    delta = data.get("delta")
    if message.status == STREAMING and isinstance(delta, str):
        message.parts.append(delta)


def _text_end(state: SessionState, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    message = state.messages.get(event["message"])
    if message is not None and message.status == STREAMING:
        message.status = COMPLETE


def _state_snapshot(state: SessionState, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    state.state = data.get("snapshot")


def _state_delta(state: SessionState, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    try:
        state.state = apply_patch(state.state if state.state is not None else {}, data["delta"])
    except (PatchError, KeyError, TypeError):
        pass  # a patch that does not apply leaves the state as it was


def _cancel_requested(
    state: SessionState, event: Mapping[str, Any], data: Mapping[str, Any]
) -> None:
    targets = [event["run"]] if event.get("run") else list(state.runs)
    for run_id in targets:
        _set_run(state, run_id, RunStatus.CANCELLING)


def _custom(state: SessionState, event: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """Usage adds up on its run; a user's rating of a message replaces that user's last one."""
    value = data.get("value")
    if not isinstance(value, dict):
        return
    if data.get("name") == USAGE:
        run = state.runs.get(event.get("run") or "")
        if run is not None:
            run.usage = add_usage(run.usage, value)
    elif data.get("name") == FEEDBACK:
        message = state.messages.get(value.get("message") or "")
        user = value.get("user")
        if message is not None and isinstance(user, str) and value.get("rating") in RATINGS:
            rated = {key: value[key] for key in ("rating", "comment", "correction") if key in value}
            message.feedback[user] = {**rated, "time": event.get("time")}


REDUCERS = {
    "RUN_STARTED": _run_started,
    "RUN_FINISHED": _run_finished,
    "RUN_ERROR": _run_error,
    "TEXT_MESSAGE_START": _text_start,
    "TEXT_MESSAGE_CONTENT": _text_content,
    "TEXT_MESSAGE_CHUNK": _text_content,
    "TEXT_MESSAGE_END": _text_end,
    "STATE_SNAPSHOT": _state_snapshot,
    "STATE_DELTA": _state_delta,
    "CANCEL": _cancel_requested,
    "CUSTOM": _custom,
}


def apply(state: SessionState, seq: int, event: Mapping[str, Any]) -> SessionState:
    """Fold one event (entry ``seq``) into ``state``, in place; return it."""
    # An anonymous JSON stream's message may be any JSON (5, "x", [1]): no event, skipped.
    reducer = REDUCERS.get(event.get("type", "")) if isinstance(event, Mapping) else None
    if reducer is not None:
        data = event.get("data")
        try:
            reducer(state, event, data if isinstance(data, dict) else {})
        except (KeyError, TypeError):
            pass  # an event without the fields its type needs is skipped
    state.seq = seq
    return state


DELTAS = ("TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CHUNK")


def apply_all(state: SessionState, seq: int, events: Iterable[Mapping[str, Any]]) -> SessionState:
    """``apply`` of each event in turn, the last being entry ``seq``: the same state, with
    text deltas (most of a conversation's log) folded here, not through three calls each.

    Used where many events are folded at once (the dataset export); what a delta does is
    ``_text_content``'s, and tests/sessions_app/domain/test_fold_all.py holds the two to one result.
    """
    messages = state.messages
    folded = False
    for event in events:
        folded = True
        if not isinstance(event, Mapping) or event.get("type", "") not in DELTAS:
            apply(state, seq, event)
            continue
        data = event.get("data")
        if not isinstance(data, dict):
            data = {}
        try:
            mid = event["message"]
            message = messages.get(mid)
        except (KeyError, TypeError):  # no message id, or not one a dict can hold
            continue
        if message is None:
            message = MessageState(
                id=mid,
                role=data.get("role") or "assistant",
                run=event.get("run"),
                agent=event.get("agent"),
            )
            messages[mid] = message
        delta = data.get("delta")
        if message.status == STREAMING and isinstance(delta, str):
            message.parts.append(delta)
    if folded:
        state.seq = seq
    return state


def fold(
    entries: Iterable[tuple[int, Mapping[str, Any]]], state: SessionState | None = None
) -> SessionState:
    """Fold ``(seq, event)`` pairs in order onto ``state`` (a fresh state by default)."""
    folded = state if state is not None else SessionState()
    for seq, event in entries:
        apply(folded, seq, event)
    return folded
