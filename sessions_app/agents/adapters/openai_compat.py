"""Answer turns with any OpenAI-compatible Chat Completions endpoint (httpx only, no extra).

    from sessions_app.agents import agent
    from sessions_app.agents.adapters.openai_compat import LLMSettings, handler

    agent("assistant")(handler(LLMSettings("http://127.0.0.1:11434/v1", "llama3.2")))

The turn's conversation is sent with ``"stream": true`` and each server-sent chunk is mapped:
``delta.content`` is text, ``delta.reasoning_content`` (or ``delta.reasoning``, as DeepSeek,
vLLM and Ollama stream it) is reasoning, ``delta.tool_calls`` are tool calls with their
arguments as they stream (shown, not run: the endpoint only proposes them). A cancel cancels
the task that reads the stream, which closes the HTTP request. One request answers the turn,
so a steer has no later model call to go into: it is not applied (documented). Importable
without Django.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from sessions_app.agents.adapters.actions import (
    Action,
    Driver,
    Prices,
    Reasoning,
    ReasoningEnd,
    Text,
    TextEnd,
    ToolArgs,
    ToolEnd,
    ToolStart,
    Usage,
    drive,
)
from sessions_app.agents.adapters.actions import usage_report as report_of

if TYPE_CHECKING:
    from sessions_app.agents.base import Handler, Turn
    from sessions_app.client import Run


@dataclass(frozen=True)
class LLMSettings:
    base_url: str  # e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1
    model: str
    api_key: str = ""
    timeout: float = 60.0
    # Usage (docs/sessions/usage-feedback.md): ask for the stream's final usage chunk
    # (``stream_options.include_usage``; turn off for a server that refuses the option), and
    # the prices that make it a cost, per million tokens (none: tokens only).
    include_usage: bool = True
    input_price: float | None = None
    output_price: float | None = None
    currency: str = "USD"


_DONE = object()


def _chunk(line: str) -> Any:
    """The JSON chunk in one server-sent-events line (``_DONE`` at the end, None otherwise)."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return _DONE
    try:
        return json.loads(payload)
    except ValueError:
        return None


def _delta(line: str) -> Any:
    """The text in one server-sent-events line of the stream (None for anything else)."""
    chunk = _chunk(line)
    if chunk is _DONE:
        return _DONE
    try:
        return chunk["choices"][0]["delta"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


async def stream_chunks(
    settings: LLMSettings, messages: list[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    """Yield the JSON chunks of a streamed chat completion."""
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    body: dict[str, Any] = {"model": settings.model, "messages": messages, "stream": True}
    if settings.include_usage:
        body["stream_options"] = {"include_usage": True}
    url = settings.base_url.rstrip("/") + "/chat/completions"
    async with (
        httpx.AsyncClient(timeout=settings.timeout) as http,
        http.stream("POST", url, json=body, headers=headers) as reply,
    ):
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            chunk = _chunk(line)
            if chunk is _DONE:
                return
            if isinstance(chunk, dict):
                yield chunk


async def stream_chat(settings: LLMSettings, messages: list[dict[str, str]]) -> AsyncIterator[str]:
    """Yield the text deltas of a streamed chat completion."""
    async for chunk in stream_chunks(settings, list(messages)):
        try:
            delta = chunk["choices"][0]["delta"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            continue
        if delta:
            yield str(delta)


class ChunkMapping:
    """Chat Completions chunks -> actions. Pure. Remembers which tool call index is which id;
    ``finish()`` closes what the stream left open."""

    def __init__(self) -> None:
        self.calls: dict[int, str] = {}
        self.reasoning = False
        self.usage: dict[str, Any] | None = None  # the stream's usage chunk, when it sends one

    def actions(self, chunk: Any) -> list[Action]:
        if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        try:
            delta = chunk["choices"][0]["delta"]
        except (KeyError, IndexError, TypeError):
            return []
        if not isinstance(delta, dict):
            return []
        out: list[Action] = []
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(thought, str) and thought:
            self.reasoning = True
            out.append(Reasoning(thought))
        content = delta.get("content")
        if isinstance(content, str) and content:
            out += self._end_reasoning()
            out.append(Text(content))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            out += self._call(call)
        return out

    def _call(self, call: Any) -> list[Action]:
        if not isinstance(call, dict) or not isinstance(call.get("index", 0), int):
            return []
        index, function = call.get("index", 0), call.get("function")
        function = function if isinstance(function, dict) else {}
        out: list[Action] = []
        if index not in self.calls:
            out += self._end_reasoning()
            self.calls[index] = str(call.get("id") or f"call-{index}")
            out.append(ToolStart(self.calls[index], str(function.get("name") or "")))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(ToolArgs(self.calls[index], arguments))
        return out

    def _end_reasoning(self) -> list[Action]:
        if not self.reasoning:
            return []
        self.reasoning = False
        return [ReasoningEnd()]

    def finish(self) -> list[Action]:
        ends: list[Action] = [ToolEnd(call) for call in self.calls.values()]
        self.calls = {}
        return [*self._end_reasoning(), TextEnd(), *ends]


def usage_of(settings: LLMSettings, usage: Any) -> Usage:
    """The stream's usage chunk (``prompt_tokens``, ``completion_tokens``) as ``Usage``."""
    usage = usage if isinstance(usage, dict) else {}
    return Usage(settings.model, usage.get("prompt_tokens"), usage.get("completion_tokens"))


def prices_of(settings: LLMSettings) -> Prices | None:
    """The settings' prices, if both are given (none: tokens only)."""
    if settings.input_price is None or settings.output_price is None:
        return None
    return Prices(settings.input_price, settings.output_price, settings.currency)


def usage_report(
    settings: LLMSettings,
    usage: Any,
    first_token_ms: float | None,
    latency_ms: float,
) -> dict[str, Any]:
    """What ``run.usage`` gets from a stream: its usage chunk's tokens, their cost at the
    settings' prices, and the measured times."""
    return report_of(usage_of(settings, usage), prices_of(settings), first_token_ms, latency_ms)


def handler(settings: LLMSettings) -> Handler:
    """A turn handler that streams the endpoint's answer to ``turn.messages`` and reports
    its usage (``run.usage``) before the run ends."""

    async def answer(turn: Turn, run: Run) -> None:
        async def stream(driver: Driver) -> None:
            mapping = ChunkMapping()
            async for chunk in stream_chunks(settings, list(turn.messages)):
                await driver.apply(mapping.actions(chunk))
            await driver.apply([*mapping.finish(), usage_of(settings, mapping.usage)])

        await drive(run, stream, prices_of(settings))

    return answer
