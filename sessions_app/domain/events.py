"""The event envelope and vocabulary of a session, and validation of what clients publish.

An event is a JSON object::

    {"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "agent": "writer", "message": "m1",
     "data": {"delta": "Hel"}, "time": 1764150000123}

``type`` is an AG-UI 1.0 event name where one exists; ``data`` holds the type's own fields;
``time`` (milliseconds since the epoch) is set by the server. Every other top-level key is
refused, so that clients cannot smuggle fields the adapters would not understand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from sessions_app.domain.errors import BadEvent
from sessions_app.domain.judgement import check_custom

MAX_ID_LENGTH: Final = 128
ENVELOPE_KEYS: Final = frozenset({"type", "run", "agent", "message", "data", "time"})
ID_KEYS: Final = ("run", "agent", "message")
ROLES: Final = frozenset({"assistant", "user", "system", "developer", "tool"})
OUTCOMES: Final = frozenset({"success", "cancelled"})

Check = Callable[[Mapping[str, Any]], None]


def _need_id(key: str) -> Check:
    def check(event: Mapping[str, Any]) -> None:
        if not event.get(key):
            raise BadEvent(f"{event['type']} needs {key!r}")

    return check


def _data_str(field: str, *, optional: bool = False) -> Check:
    def check(event: Mapping[str, Any]) -> None:
        value = event.get("data", {}).get(field)
        if value is None and optional:
            return
        if not isinstance(value, str):
            raise BadEvent(f"{event['type']} needs data.{field} as a string")

    return check


def _data_choice(field: str, choices: frozenset[str]) -> Check:
    def check(event: Mapping[str, Any]) -> None:
        value = event.get("data", {}).get(field)
        # A list or an object is no choice either (and cannot be looked up in a set).
        if value is not None and (not isinstance(value, str) or value not in choices):
            shown = value if isinstance(value, str | int | float | bool) else type(value).__name__
            raise BadEvent(f"data.{field} must be one of {sorted(choices)}, not {shown!r}")

    return check


def _data_present(field: str) -> Check:
    def check(event: Mapping[str, Any]) -> None:
        if field not in event.get("data", {}):
            raise BadEvent(f"{event['type']} needs data.{field}")

    return check


def _json_patch(event: Mapping[str, Any]) -> None:
    delta = event.get("data", {}).get("delta")
    if not isinstance(delta, list) or not all(
        isinstance(op, dict) and isinstance(op.get("op"), str) and isinstance(op.get("path"), str)
        for op in delta
    ):
        raise BadEvent("STATE_DELTA needs data.delta as a JSON Patch (a list of operations)")


RULES: Final[dict[str, tuple[Check, ...]]] = {
    "RUN_STARTED": (_need_id("run"),),
    "RUN_FINISHED": (_need_id("run"), _data_choice("outcome", OUTCOMES)),
    "RUN_ERROR": (_data_str("message"),),
    "STEP_STARTED": (_data_str("stepName"),),
    "STEP_FINISHED": (_data_str("stepName"),),
    "TEXT_MESSAGE_START": (_need_id("message"), _data_choice("role", ROLES)),
    "TEXT_MESSAGE_CONTENT": (_need_id("message"), _data_str("delta")),
    "TEXT_MESSAGE_END": (_need_id("message"),),
    "TEXT_MESSAGE_CHUNK": (
        _need_id("message"),
        _data_str("delta", optional=True),
        _data_choice("role", ROLES),
    ),
    "TOOL_CALL_START": (_data_str("toolCallId"), _data_str("toolCallName")),
    "TOOL_CALL_ARGS": (_data_str("toolCallId"), _data_str("delta")),
    "TOOL_CALL_END": (_data_str("toolCallId"),),
    "TOOL_CALL_RESULT": (_data_str("toolCallId"), _data_str("content")),
    "STATE_SNAPSHOT": (_data_present("snapshot"),),
    "STATE_DELTA": (_json_patch,),
    "MESSAGES_SNAPSHOT": (_data_present("messages"),),
    "REASONING_START": (),
    "REASONING_MESSAGE_START": (),
    "REASONING_MESSAGE_CONTENT": (_data_str("delta"),),
    "REASONING_MESSAGE_END": (),
    "REASONING_END": (),
    "RAW": (_data_present("event"),),
    "CUSTOM": (_data_str("name"), check_custom),  # usage and feedback: domain/judgement.py
    # Live control (ours; AG-UI has no such events): a device asks, the agent acknowledges.
    "CANCEL": (_data_str("reason", optional=True),),
    "STEER": (_need_id("run"), _data_str("text")),
    "CONTROL_ACK": (_need_id("run"), _data_choice("action", frozenset({"cancel", "steer"}))),
}


def register_event_type(name: str, *checks: Check) -> None:
    """Add an event type to the vocabulary (used by the live-control layer)."""
    RULES[name] = checks


def validate_event(raw: object) -> dict[str, Any]:
    """Return the event as it will be stored (without ``time``), or raise BadEvent."""
    if not isinstance(raw, dict):
        raise BadEvent("an event must be a JSON object")
    extra = set(raw) - ENVELOPE_KEYS
    if extra:
        raise BadEvent(f"unknown event fields {sorted(extra)}; put them in 'data'")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in RULES:
        raise BadEvent(f"unknown event type {kind!r}", known=sorted(RULES))
    for key in ID_KEYS:
        value = raw.get(key)
        if value is not None and (
            not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH or "\x00" in value
        ):
            raise BadEvent(f"{key!r} must be a string of 1 to {MAX_ID_LENGTH} characters (no NUL)")
    data = raw.get("data", {})
    if not isinstance(data, dict):
        raise BadEvent("'data' must be a JSON object")
    try:
        nul = has_nul(data)
    except RecursionError:
        raise BadEvent("'data' is nested too deeply to store") from None
    if nul:
        raise BadEvent("text may not contain NUL (\\u0000) characters: the log cannot store them")
    event = {key: raw[key] for key in ("type", *ID_KEYS) if raw.get(key) is not None}
    if data:
        event["data"] = data
    for check in RULES[kind]:
        check({**event, "data": data})
    return event


def has_nul(value: Any) -> bool:
    """Whether a JSON value holds the NUL character in any string (key or value): PostgreSQL
    stores none in text or jsonb, so it is refused at the door rather than in a commit."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


def encode_event(event: Mapping[str, Any], time_ms: int) -> str:
    """The stored text of an event: compact JSON with the server time.

    Refused, since every reader of the log would choke on them, though Python's JSON parser
    lets them through: NaN and infinities (not JSON), lone surrogates such as ``\\ud83d`` (no
    UTF-8 form) and nesting deeper than the interpreter's recursion limit.
    """
    try:
        text = json.dumps(
            {**event, "time": time_ms}, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except RecursionError:
        raise BadEvent("nested too deeply to store") from None
    except ValueError as exc:
        raise BadEvent(f"not JSON: {exc}; NaN and Infinity have no JSON form") from exc
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise BadEvent("a lone surrogate (such as \\ud83d) has no UTF-8 form") from None
    return text
