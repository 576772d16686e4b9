"""Events that users' devices send: messages and live control of runs.

Control travels on the log like everything else, so a cancel is never lost because a socket
closed, every device sees it, and the agent acknowledges it where everyone can see.
"""

from __future__ import annotations

import secrets
from typing import Any

from sessions_app.domain.errors import BadRequest

MAX_TEXT = 32_000


def _text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("'text' must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise BadRequest(f"'text' is longer than {MAX_TEXT} characters")
    return text


def _run(run: object, *, required: bool) -> str | None:
    if run is None and not required:
        return None
    if not isinstance(run, str) or not 0 < len(run) <= 128:
        raise BadRequest("'run' must be a run id" + ("" if required else " or omitted"))
    return run


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def user_message(text: object, message: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """A complete user message as three events; returns its id and the events."""
    body = _text(text)
    mid = message or new_id("u")
    return mid, [
        {"type": "TEXT_MESSAGE_START", "message": mid, "data": {"role": "user"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": mid, "data": {"delta": body}},
        {"type": "TEXT_MESSAGE_END", "message": mid},
    ]


def cancel(run: object = None, reason: object = None) -> list[dict[str, Any]]:
    """Cancel one run, or (run omitted) every run of the session still going."""
    event: dict[str, Any] = {"type": "CANCEL"}
    run_id = _run(run, required=False)
    if run_id:
        event["run"] = run_id
    if reason is not None:
        if not isinstance(reason, str):
            raise BadRequest("'reason' must be a string or omitted")
        event["data"] = {"reason": reason[:200]}
    return [event]


def steer(run: object, text: object) -> list[dict[str, Any]]:
    """A new instruction for a running run."""
    return [{"type": "STEER", "run": _run(run, required=True), "data": {"text": _text(text)}}]


def interrupt(
    run: object, text: object, message: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Cancel (one run or all), then a new user message, in one append."""
    mid, message_events = user_message(text, message)
    return mid, [*cancel(run, reason="interrupt"), *message_events]
