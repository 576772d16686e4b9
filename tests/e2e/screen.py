"""What a user's screen folds out of a run's events, shared by the agent e2e tests."""

from __future__ import annotations

from typing import Any


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")


def tool_calls(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{toolCallId: {"name", "args", "result", "ended"}} as a user's screen folds them."""
    calls: dict[str, dict[str, Any]] = {}
    for e in events:
        data = e.get("data", {})
        if e["type"] == "TOOL_CALL_START":
            calls[data["toolCallId"]] = {"name": data["toolCallName"], "args": "", "ended": False}
        elif e["type"] == "TOOL_CALL_ARGS":
            calls[data["toolCallId"]]["args"] += data["delta"]
        elif e["type"] == "TOOL_CALL_END":
            calls[data["toolCallId"]]["ended"] = True
        elif e["type"] == "TOOL_CALL_RESULT":
            calls[data["toolCallId"]]["result"] = data["content"]
    return calls
