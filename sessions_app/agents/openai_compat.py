"""Stream a chat completion from any OpenAI-compatible endpoint (``/chat/completions``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class LLMSettings:
    base_url: str  # e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1
    model: str
    api_key: str = ""
    timeout: float = 60.0


async def stream_chat(settings: LLMSettings, messages: list[dict[str, str]]) -> AsyncIterator[str]:
    """Yield the text deltas of a streamed chat completion."""
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    body = {"model": settings.model, "messages": messages, "stream": True}
    url = settings.base_url.rstrip("/") + "/chat/completions"
    async with (
        httpx.AsyncClient(timeout=settings.timeout) as http,
        http.stream("POST", url, json=body, headers=headers) as reply,
    ):
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            delta = _delta(line)
            if delta is _DONE:
                return
            if delta:
                yield str(delta)


_DONE = object()


def _delta(line: str) -> Any:
    """The text in one server-sent-events line of the stream (None for anything else)."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return _DONE
    try:
        chunk = json.loads(payload)
        return chunk["choices"][0]["delta"].get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
