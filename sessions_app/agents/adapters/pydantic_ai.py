"""Answer turns with a pydantic-ai ``Agent`` (the ``pydantic-ai`` extra).

    from pydantic_ai import Agent
    from sessions_app.agents import agent
    from sessions_app.agents.adapters.pydantic_ai import handler

    assistant = Agent("openai:gpt-5.2", instructions="Be brief.")
    agent("assistant")(handler(assistant))

The agent runs with ``Agent.iter`` and each model request's and tool call's events are streamed
(``node.stream``) into the turn's run: text, thinking as reasoning, tool calls with their
arguments as the model writes them and the tool's result, ``CustomEvent``s, and the state of a
``StateDeps`` (any ``StateHandler`` deps) whenever it changed. A tool that calls another agent
through ``delegate(...)`` streams that agent into a child run. A steer is enqueued into the
running agent (``AgentRun.enqueue``): the next model request sees it. A cancel cancels the
task that runs the agent: the model stream is closed and no further tool runs. Importable
without Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sessions_app.agents.adapters.actions import (
    Action,
    Custom,
    Driver,
    PriceList,
    Reasoning,
    ReasoningEnd,
    State,
    Text,
    TextEnd,
    ToolArgs,
    ToolEnd,
    ToolResult,
    ToolStart,
    Usage,
    as_text,
    drive,
    jsonable,
    pump_steers,
    require,
    token_count,
)
from sessions_app.client.errors import RunCancelled

if TYPE_CHECKING:
    from sessions_app.agents.base import Handler, Turn
    from sessions_app.client import Run

EXTRA = "pydantic-ai"
# The run the current task streams an agent into and its driver: how ``delegate`` finds
# where a sub-agent's child run goes (and the prices of its usage).
_current: contextvars.ContextVar[tuple[Run, Driver] | None] = contextvars.ContextVar(
    "sessions_app_pydantic_ai_run", default=None
)


def _pydantic_ai() -> Any:
    return require("pydantic_ai", "pydantic-ai", "pydantic-ai", EXTRA)


class EventMapping:
    """pydantic-ai stream events -> actions. Pure: the same events give the same actions.

    One instance per model request stream and tool call stream of a run; it remembers which
    part index holds which tool call (a delta names its part by index only).
    """

    def __init__(self, key: str = "") -> None:
        self.key = key
        self.calls: dict[int, str] = {}

    def actions(self, event: Any) -> list[Action]:
        kind = getattr(event, "event_kind", None)
        if kind == "part_start":
            return self._start(event.index, event.part)
        if kind == "part_delta":
            return self._delta(event.index, event.delta)
        if kind == "part_end":
            return self._end(event.index, event.part)
        if kind in ("function_tool_result", "output_tool_result"):
            return [ToolResult(event.part.tool_call_id, _content(event.part), self.key)]
        if kind == "custom":
            is_data = dataclasses.is_dataclass(event) and not isinstance(event, type)
            value = dataclasses.asdict(event) if is_data else {}
            for own in ("event_kind", "name", "tool_call_id", "tool_name"):
                value.pop(own, None)
            return [Custom(event.name or type(event).__name__, jsonable(value), self.key)]
        return []

    def _start(self, index: int, part: Any) -> list[Action]:
        kind = getattr(part, "part_kind", None)
        if kind == "text":
            return [Text(part.content, self.key)] if part.content else []
        if kind == "thinking":
            return [Reasoning(part.content, self.key)] if part.content else []
        if kind in ("tool-call", "builtin-tool-call"):
            self.calls[index] = part.tool_call_id
            start: list[Action] = [ToolStart(part.tool_call_id, part.tool_name, self.key)]
            if part.args:
                start.append(ToolArgs(part.tool_call_id, as_text(part.args), self.key))
            return start
        if kind == "builtin-tool-return":
            return [ToolResult(part.tool_call_id, _content(part), self.key)]
        return []

    def _delta(self, index: int, delta: Any) -> list[Action]:
        kind = getattr(delta, "part_delta_kind", None)
        if kind == "text":
            return [Text(delta.content_delta, self.key)] if delta.content_delta else []
        if kind == "thinking":
            return [Reasoning(delta.content_delta, self.key)] if delta.content_delta else []
        if kind == "tool_call" and index in self.calls and delta.args_delta:
            return [ToolArgs(self.calls[index], as_text(delta.args_delta), self.key)]
        return []

    def _end(self, index: int, part: Any) -> list[Action]:
        kind = getattr(part, "part_kind", None)
        if kind == "text":
            return [TextEnd(self.key)]
        if kind == "thinking":
            return [ReasoningEnd(self.key)]
        if kind in ("tool-call", "builtin-tool-call") and index in self.calls:
            return [ToolEnd(self.calls.pop(index), self.key)]
        return []


def _content(part: Any) -> str:
    content = getattr(part, "content", None)
    return as_text(content if content is not None else "")


def state_of(deps: Any) -> Any:
    """The run's state as JSON, if its deps hold one (pydantic-ai's ``StateDeps``, or any
    dataclass with a ``state`` field, the ``StateHandler`` protocol); None otherwise."""
    fields = getattr(deps, "__dataclass_fields__", None)
    if isinstance(deps, type) or not isinstance(fields, dict) or "state" not in fields:
        return None
    return jsonable(getattr(deps, "state", None))


def conversation(turn: Turn) -> tuple[str, list[Any]]:
    """The turn's user prompt and the pydantic-ai message history before it."""
    messages = _pydantic_ai().messages
    history: list[Any] = []
    for item in turn.messages[:-1]:
        content = str(item.get("content", ""))
        if item.get("role") == "assistant":
            history.append(messages.ModelResponse(parts=[messages.TextPart(content)]))
        else:
            history.append(messages.ModelRequest(parts=[messages.UserPromptPart(content)]))
    prompt = str(turn.messages[-1].get("content", "")) if turn.messages else turn.text
    return prompt, history


async def stream_agent(agent: Any, run: Run, driver: Driver, key: str, **options: Any) -> Any:
    """Run ``agent`` with ``options`` (those of ``Agent.iter``), its events into ``driver``
    under ``key``; steers of ``run`` go into its next model request. Returns its output."""
    Agent = _pydantic_ai().Agent
    token = _current.set((run, driver))
    try:
        async with agent.iter(**options) as agent_run:
            steers = asyncio.create_task(pump_steers(run, agent_run.enqueue))
            try:
                shown = None
                async for node in agent_run:
                    if Agent.is_model_request_node(node) or Agent.is_call_tools_node(node):
                        mapping = EventMapping(key)
                        async with node.stream(agent_run.ctx) as events:
                            async for event in events:
                                await driver.apply(mapping.actions(event))
                    state = state_of(getattr(agent_run.ctx.deps, "user_deps", None))
                    if state is not None and state != shown:  # e.g. a tool changed it
                        shown = state
                        await driver.apply([State(state, key)])
            finally:
                steers.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await steers
            usage = agent_run.usage  # a property in pydantic-ai 2 (a method before)
            if callable(usage) and not hasattr(usage, "input_tokens"):
                usage = usage()
            await driver.apply(usage_of(agent, usage, key))
            return agent_run.result.output if agent_run.result is not None else None
    finally:
        _current.reset(token)


def usage_of(agent: Any, usage: Any, key: str = "") -> list[Action]:
    """pydantic-ai's ``RunUsage`` as a ``Usage`` with the model's name (pydantic-ai reports
    no cost), if it counted any tokens."""
    given, taken = getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None)
    if token_count(given) is None and token_count(taken) is None:
        return []
    model = getattr(getattr(agent, "model", None), "model_name", None)
    return [Usage(model if isinstance(model, str) else None, given, taken, key)]


def handler(
    agent: Any,
    *,
    options: Callable[[Turn], dict[str, Any]] | None = None,
    prices: PriceList | None = None,
) -> Handler:
    """A turn handler that answers with ``agent`` (a ``pydantic_ai.Agent``).

    ``options(turn)`` gives extra keyword arguments of ``Agent.iter`` (e.g. ``deps``); the
    prompt and the message history come from ``turn.messages``. ``prices`` (``Prices``, or
    one per model name) turn the reported tokens into a cost.
    """
    _pydantic_ai()

    async def answer(turn: Turn, run: Run) -> None:
        prompt, history = conversation(turn)
        extra = options(turn) if options is not None else {}

        async def stream(driver: Driver) -> None:
            await stream_agent(
                agent, run, driver, "", user_prompt=prompt, message_history=history, **extra
            )

        await drive(run, stream, prices)

    return answer


async def delegate(agent: Any, prompt: str, *, name: str | None = None, **options: Any) -> Any:
    """From a tool of an agent being streamed by ``handler``: run ``agent`` (another pydantic-ai
    agent) on ``prompt`` in a child run of the turn's run, named ``name`` (default: the
    agent's name), and return its output. Outside a handler it simply runs the agent."""
    current = _current.get()
    if current is None:
        return (await agent.run(prompt, **options)).output
    run, parent = current
    child = run.session.run(agent=name or getattr(agent, "name", None) or "sub-agent", parent=run)
    await child.__aenter__()
    driver = Driver(child, parent.prices)
    try:
        output = await stream_agent(agent, child, driver, "", user_prompt=prompt, **options)
        await driver.close()
    except asyncio.CancelledError:  # the turn was cancelled: so is its sub-agent
        await child.__aexit__(RunCancelled, RunCancelled(child.id), None)
        raise
    except BaseException as exc:
        await child.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    await child.__aexit__(None, None, None)
    return output
