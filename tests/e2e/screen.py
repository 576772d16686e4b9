"""What a user's screen folds out of a run's events, and reading a session back: shared by
the agent e2e tests."""

from __future__ import annotations

from typing import Any

import httpx


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


def new_session(site: dict[str, Any], name: str) -> str:
    """Create session ``name`` with the site's API key (``site["key"]``); return its name."""
    reply = httpx.post(f"{site['base']}/api/sessions/", json={"name": name},
                       headers={"Authorization": f"Bearer {site['key']}"})  # fmt: skip
    assert reply.status_code == 201, reply.text
    return name


def history(site: dict[str, Any], session: str) -> list[dict[str, Any]]:
    """The session's events, read with the site's API key."""
    reply = httpx.get(f"{site['base']}/api/sessions/{session}/events?limit=1000",
                      headers={"Authorization": f"Bearer {site['key']}"})  # fmt: skip
    reply.raise_for_status()
    return list(reply.json()["events"])
