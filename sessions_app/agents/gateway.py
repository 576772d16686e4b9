"""The gateway: answer a turn by calling an agent server a team already runs.

One setting names, per agent name, an upstream endpoint and the protocol it speaks::

    SESSIONS_APP = {"AGENT_GATEWAYS": {
        "assistant": {"protocol": "agui", "url": "http://127.0.0.1:9000/agent",
                      "headers": {"Authorization": "Bearer ..."}, "timeout": 60},
    }}

``handlers(setting)`` gives one handler per name for the worker. A handler posts the turn's
conversation upstream (AG-UI: also the tools, context, state and forwardedProps the client
sent through our AG-UI door), reads the upstream's event stream and writes it into the run.
The worker holds the upstream request, not the user's connection: a user who closes the tab
loses nothing, a cancel closes the upstream request, a crashed worker's turn runs again.

Protocols: ``agui`` (AG-UI 1.0, e.g. pydantic-ai's AG-UI app, ag-ui-langgraph), ``aisdk``
(the Vercel AI SDK UI message stream) and ``openai`` (Chat Completions, streamed). The
parsers are pure: the event-stream decoder and the AG-UI and AI SDK readers in
``sessions_app/domain/upstream.py``; Chat Completions chunks go through the OpenAI-compatible
adapter's ``ChunkMapping`` (``OpenAIReader`` below). Importable without Django. See
docs/sessions/agents.md, "Gateway: in front of an existing agent server".

Steers: none of the three protocols can take a new instruction in the middle of an answer,
so a steer *restarts* the upstream call: the request in flight is closed, what it wrote stays
in the log (its open message and tool calls closed), and the upstream is called again with
the conversation, the answer so far and the steer as the next user message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import httpx

from sessions_app.agents.adapters import actions as adapter
from sessions_app.agents.adapters.openai_compat import ChunkMapping
from sessions_app.agents.base import Handler, Turn
from sessions_app.client.errors import RunCancelled
from sessions_app.client.text import split_text
from sessions_app.domain.upstream import (
    READERS,
    Action,
    Emit,
    EndText,
    Reader,
    SSEEvent,
    Text,
    UpstreamError,
    agui_body,
    aisdk_body,
    conversation,
    json_object,
)

if TYPE_CHECKING:
    from sessions_app.client import Run

__all__ = ["PROTOCOLS", "Upstream", "UpstreamError", "from_setting", "handler", "handlers"]

PROTOCOLS: Final = ("agui", "aisdk", "openai")
KEYS: Final = frozenset({"protocol", "url", "headers", "timeout", "model"})
DEFAULT_TIMEOUT: Final = 60.0
HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
ERROR_BODY_CHARS: Final = 300
SETTING: Final = 'SESSIONS_APP["AGENT_GATEWAYS"]'
# One append stays well inside the server's MAX_EVENTS_PER_PUBLISH and MAX_FRAME_BYTES.
BATCH_EVENTS: Final = 100
BATCH_BYTES: Final = 128 * 1024
SPLIT: Final = frozenset({"TOOL_CALL_ARGS", "REASONING_MESSAGE_CONTENT"})  # deltas: cut freely


@dataclass(frozen=True)
class Upstream:
    """An agent endpoint the gateway calls.

    protocol  ``agui``, ``aisdk`` or ``openai``
    url       the endpoint (for ``openai`` the base URL: ``/chat/completions`` is appended)
    headers   sent with every request (e.g. ``Authorization``)
    timeout   seconds to connect, and the longest silence of the stream before it counts as
              stalled (the run then ends with ``RUN_ERROR``)
    model     the model to ask for (``openai`` only)
    name      the agent name it answers for (in error messages)
    """

    protocol: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    model: str = ""
    name: str = ""

    def label(self) -> str:
        """How errors name it: users see them, so no credentials or query string."""
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        where = f"{parts.scheme}://{host}{port}{parts.path}"
        return f"upstream {self.name!r} ({where})" if self.name else f"upstream {where}"


def _bad(name: str, problem: str) -> ValueError:
    return ValueError(f"{SETTING}[{name!r}]: {problem}")


def from_setting(name: object, value: object) -> Upstream:
    """One entry of ``AGENT_GATEWAYS`` as an ``Upstream``; a bad one raises ``ValueError``
    saying what to write instead."""
    if not isinstance(name, str) or not 0 < len(name) <= 128:
        raise ValueError(f"{SETTING}: agent names are strings of 1 to 128 characters, not {name!r}")
    if not isinstance(value, Mapping):
        raise _bad(name, 'expected a dict such as {"protocol": "agui", "url": "http://..."}')
    unknown = sorted(set(value) - KEYS)
    if unknown:
        raise _bad(name, f"unknown keys {unknown}; the keys are {sorted(KEYS)}")
    protocol = value.get("protocol")
    if protocol not in PROTOCOLS:
        raise _bad(name, f"'protocol' must be one of {list(PROTOCOLS)}, not {protocol!r}")
    return Upstream(
        protocol=protocol,
        url=_url(name, value.get("url")),
        headers=_headers(name, value.get("headers", {})),
        timeout=_timeout(name, value.get("timeout", DEFAULT_TIMEOUT)),
        model=_model(name, protocol, value.get("model")),
        name=name,
    )


def _url(name: str, url: object) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad(name, f"'url' must be an http:// or https:// URL with a host, not {url!r}")
    return str(url)


def _headers(name: str, headers: object) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        raise _bad(name, "'headers' must be a dict of header names to string values")
    out: dict[str, str] = {}
    for key, val in headers.items():
        if not isinstance(key, str) or not HEADER_NAME.match(key):
            raise _bad(name, f"{key!r} is not a valid header name")
        if not isinstance(val, str) or any(c in val for c in "\r\n\x00"):
            raise _bad(name, f"header {key!r} needs a string value without line breaks")
        out[key] = val
    return out


def _timeout(name: str, timeout: object) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise _bad(name, f"'timeout' must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


def _model(name: str, protocol: str, model: object) -> str:
    if protocol != "openai":
        if model is not None:
            raise _bad(
                name, f"'model' is for the openai protocol; a {protocol} server picks its own"
            )
        return ""
    if not isinstance(model, str) or not model:
        raise _bad(name, "the openai protocol needs 'model' (e.g. \"gpt-4o-mini\")")
    return model


def handlers(setting: object) -> dict[str, Handler]:
    """A handler per agent name of the ``AGENT_GATEWAYS`` setting (``{}`` when unset)."""
    if setting is None:
        return {}
    if not isinstance(setting, Mapping):
        raise ValueError(f"{SETTING} must be a dict of agent names to upstreams")
    return {name: handler(from_setting(name, value)) for name, value in setting.items()}


def handler(upstream: Upstream) -> Handler:
    """The handler that answers a turn through ``upstream``."""
    if upstream.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {upstream.protocol!r}; use one of {PROTOCOLS}")

    async def answer(turn: Turn, run: Run) -> None:
        await relay(upstream, turn, run)

    answer.__name__ = answer.__qualname__ = f"gateway_{upstream.protocol}"
    return answer


# --- one answer ------------------------------------------------------------------------------


async def relay(upstream: Upstream, turn: Turn, run: Run) -> None:
    """Call the upstream and write its answer into ``run``; a steer restarts the call."""
    messages = conversation(turn.messages) or [{"role": "user", "content": turn.text}]
    attempt = 0
    while True:
        reader = READERS[upstream.protocol]() if upstream.protocol != "openai" else OpenAIReader()
        run_id = run.id if attempt == 0 else f"{run.id}-{attempt}"
        steer = await _attempt(upstream, _body(upstream, turn, run_id, messages), reader, run)
        if steer is None:
            return
        await _write(run, reader.close_open())
        messages = conversation(messages, "".join(reader.answer), steer)
        attempt += 1


def _body(upstream: Upstream, turn: Turn, run_id: str, messages: list[dict[str, str]]) -> Any:
    if upstream.protocol == "agui":
        return agui_body(turn.session, run_id, messages, turn.message, turn.input)
    if upstream.protocol == "aisdk":
        return aisdk_body(turn.session, messages, turn.message)
    return {"model": upstream.model, "messages": messages, "stream": True}


async def _attempt(upstream: Upstream, body: Any, reader: Reader, run: Run) -> str | None:
    """Read one upstream answer into ``run`` until it ends, a user cancels (the request is
    closed) or steers (returned: the caller restarts)."""
    pump = asyncio.ensure_future(_pump(upstream, body, reader, run))
    cancel = asyncio.ensure_future(run.cancelled.wait())
    steer = asyncio.ensure_future(_next_steer(run))
    try:
        await asyncio.wait({pump, cancel, steer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, cancel, steer):
            task.cancel()  # pump's stream is closed: the upstream request is aborted
        await asyncio.gather(pump, cancel, steer, return_exceptions=True)
    if run.cancelled.is_set():
        return None
    if not pump.cancelled():
        pump.result()  # the upstream's answer is complete, or its failure raises here
        return None
    return None if steer.cancelled() else steer.result()


async def _next_steer(run: Run) -> str | None:
    async for text in run.steers():
        return text
    return None


async def _pump(upstream: Upstream, body: Any, reader: Reader, run: Run) -> None:
    headers = {"Accept": "text/event-stream", **upstream.headers}
    url = upstream.url
    if upstream.protocol == "openai":
        url = url.rstrip("/") + "/chat/completions"
    try:
        async with (
            httpx.AsyncClient(timeout=upstream.timeout) as http,
            http.stream("POST", url, json=body, headers=headers) as reply,
        ):
            await _check(upstream, reply)
            async for chunk in reply.aiter_bytes():
                await _write(run, reader.feed(chunk))
                if reader.done:
                    return  # whatever follows the end is not read (nor waited for)
            await _write(run, reader.end())
    except UpstreamError as exc:
        raise UpstreamError(f"{upstream.label()}: {exc}") from None
    except httpx.TimeoutException:
        raise UpstreamError(
            f"{upstream.label()}: nothing came for {upstream.timeout:g} s (the 'timeout')"
        ) from None
    except httpx.ConnectError as exc:
        raise UpstreamError(f"{upstream.label()}: cannot connect: {exc}") from None
    except httpx.HTTPError as exc:
        raise UpstreamError(f"{upstream.label()}: {type(exc).__name__}: {exc}") from None


async def _check(upstream: Upstream, reply: httpx.Response) -> None:
    if reply.status_code >= 300:
        text = ""
        with contextlib.suppress(httpx.HTTPError):
            async for piece in reply.aiter_text():
                text += piece
                if len(text) >= ERROR_BODY_CHARS:
                    break
        detail = f": {text[:ERROR_BODY_CHARS]!r}" if text else ""
        raise UpstreamError(f"answered HTTP {reply.status_code}{detail}")
    kind = reply.headers.get("content-type", "")
    if kind.split(";")[0].strip().lower() != "text/event-stream":
        raise UpstreamError(f"answered with Content-Type {kind!r}, not text/event-stream")


@dataclass
class OpenAIReader(Reader):
    """Chat Completions chunks, mapped by the OpenAI-compatible adapter's ``ChunkMapping``
    (text, reasoning, proposed tool calls). A chunk with an ``error`` raises. The stream ends
    with ``data: [DONE]`` (or, for servers that never send it, after a ``finish_reason``)."""

    terminal: str = "'data: [DONE]'"
    mapping: ChunkMapping = field(default_factory=ChunkMapping)
    finished: bool = False  # a choice had its finish_reason
    thought: str | None = None  # the reasoning message in progress

    def on_event(self, event: SSEEvent) -> list[Action]:
        if event.data.strip() == "[DONE]":
            return self._close()
        chunk = json_object(event.data)
        error = chunk.get("error")
        if error is not None:
            detail = error.get("message") if isinstance(error, dict) else error
            raise UpstreamError(f"the upstream failed: {detail}")
        choices = chunk.get("choices")
        if isinstance(choices, list) and any(
            isinstance(c, dict) and c.get("finish_reason") for c in choices
        ):
            self.finished = True
        return self._convert(self.mapping.actions(chunk))

    def end(self) -> list[Action]:
        if not self.done and self.finished:
            return self._close()
        return super().end()

    def _close(self) -> list[Action]:
        return self._convert(self.mapping.finish()) + self._finish()

    def _convert(self, actions: list[adapter.Action]) -> list[Action]:
        out: list[Action] = []
        for action in actions:
            match action:
                case adapter.Text(delta=delta):
                    out += self._end_thought() + self._text("-", delta)
                case adapter.TextEnd():
                    out += self._end_text()
                case adapter.Reasoning(delta=delta):
                    if self.thought is None:
                        self.thought = f"r-{uuid.uuid4().hex[:10]}"
                        out += self._reasoning("start", self.thought)
                    out += self._reasoning("delta", self.thought, delta)
                case adapter.ReasoningEnd():
                    out += self._end_thought()
                case adapter.ToolStart(call_id=call, name=name):
                    out += self._tool_start(call, name)
                case adapter.ToolArgs(call_id=call, delta=delta):
                    out += self._tool_args(call, delta)
                case adapter.ToolEnd(call_id=call):
                    out += self._tool_end(call)
        return out

    def _end_thought(self) -> list[Action]:
        thought, self.thought = self.thought, None
        return self._reasoning("end", thought) if thought is not None else []


# --- writing into the run --------------------------------------------------------------------


async def _write(run: Run, actions: list[Action]) -> None:
    """Text through ``run.text`` (coalesced); other events in few appends, after the text
    written before them, each append within the server's limits."""
    batch: list[dict[str, Any]] = []
    size = 0
    for action in actions:
        if run.cancelled.is_set():
            raise RunCancelled(run.id)
        if isinstance(action, Emit):
            for event in _events(run, action):
                if len(batch) >= BATCH_EVENTS or size >= BATCH_BYTES:
                    await _publish(run, batch)
                    batch, size = [], 0
                batch.append(event)
                size += len(json.dumps(event, ensure_ascii=False))
            continue
        await _publish(run, batch)
        batch, size = [], 0
        if isinstance(action, Text):
            await run.text(action.delta)
        elif isinstance(action, EndText):
            await run.end_message()
    await _publish(run, batch)


def _events(run: Run, action: Emit) -> list[dict[str, Any]]:
    """The action's event, or several when a long delta would pass the event size limit."""
    delta = action.data.get("delta")
    if action.type not in SPLIT or not isinstance(delta, str):
        return [_envelope(run, action)]
    return [
        _envelope(run, Emit(action.type, {**action.data, "delta": piece}, action.message))
        for piece in split_text(delta, run.session.client.max_event_bytes)
    ]


async def _publish(run: Run, events: list[dict[str, Any]]) -> None:
    if not events:
        return
    if run.error is not None:
        raise run.error
    await run.flush()
    await run.session.publish(events)


def _envelope(run: Run, action: Emit) -> dict[str, Any]:
    event: dict[str, Any] = {"type": action.type, "run": run.id, "data": action.data}
    if run.agent:
        event["agent"] = run.agent
    if action.message is not None:
        event["message"] = action.message
    return event
