"""Answer turns with an OpenAI Agents SDK ``Agent`` (the ``openai-agents`` extra).

    from agents import Agent
    from sessions_app.agents import agent
    from sessions_app.agents.adapters.openai_agents import handler

    triage = Agent(name="triage", instructions="...", handoffs=[billing, support])
    agent("assistant")(handler(triage))

The agent runs with ``Runner.run_streamed(agent, turn.messages)`` and ``stream_events()`` is
mapped: the raw Responses events give text, reasoning (its summary or text deltas) and tool
calls with their arguments as the model writes them; ``tool_output`` items give the tools'
results; a handoff (``AgentUpdatedStreamEvent``) moves the rest of the answer into a child run
of the agent handed to. A steer is added as a user input item to every model call after it
arrives (``RunConfig.call_model_input_filter``). A cancel cancels the task that consumes the
stream and the SDK's run (``RunResultStreaming.cancel()``): no further model call or tool
runs. Each model response's usage (``response.completed``: the tokens the SDK adds to
``context_wrapper.usage``, and the response's model) is reported in the run of the agent
that made the call: a handoff's in its child run, an agent used as a tool in its own; what
the SDK counted beyond them (a tool agent not streamed) is reported in the turn's run at the end.
Importable without Django.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sessions_app.agents.adapters.actions import (
    Action,
    Driver,
    Enter,
    Leave,
    PriceList,
    Reasoning,
    ReasoningEnd,
    Text,
    TextEnd,
    ToolArgs,
    ToolEnd,
    ToolResult,
    ToolStart,
    Usage,
    as_text,
    drive,
    require,
    token_count,
)

if TYPE_CHECKING:
    from sessions_app.agents.base import Handler, Turn
    from sessions_app.client import Run

EXTRA = "openai-agents"
# The turn's driver, its stream's mapping and the mappings of agents used as tools, for the
# ``on_stream`` callback of ``agent.as_tool`` (it runs in the SDK's tasks, copied from ours).
_current: contextvars.ContextVar[tuple[Driver, StreamMapping, dict[str, StreamMapping]] | None]
_current = contextvars.ContextVar("sessions_app_openai_agents_run", default=None)
REASONING_DELTAS = ("response.reasoning_summary_text.delta", "response.reasoning_text.delta")


def _agents() -> Any:
    return require("agents", "OpenAI Agents SDK", "openai-agents", EXTRA)


def _field(value: Any, name: str) -> Any:
    """A field of an SDK object or of the plain dict the SDK sometimes keeps instead."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


class StreamMapping:
    """``stream_events()`` of a streamed run -> actions. Pure.

    Remembers which output item is which tool call (argument deltas name the item), and the
    agent answering now: after a handoff, its own child run.
    """

    def __init__(self, key: str = "", agent: str | None = None) -> None:
        self.calls: dict[str, str] = {}  # output item id -> call id
        self.call_keys: dict[str, str] = {}  # call id -> the key of the run that made it
        self.agent = agent
        self.base = key
        self.key = key
        self.handoffs = 0

    def actions(self, event: Any) -> list[Action]:
        kind = getattr(event, "type", None)
        if kind == "raw_response_event":
            return self._raw(event.data)
        if kind == "run_item_stream_event":
            return self._item(event.name, event.item)
        if kind == "agent_updated_stream_event":
            return self._agent(getattr(event.new_agent, "name", None) or "agent")
        return []

    def _raw(self, data: Any) -> list[Action]:
        kind, key = getattr(data, "type", None), self.key
        if kind == "response.output_text.delta":
            return [Text(data.delta, key)] if data.delta else []
        if kind in REASONING_DELTAS:
            return [Reasoning(data.delta, key)] if data.delta else []
        if kind == "response.function_call_arguments.delta":
            call = self.calls.get(data.item_id)
            return [ToolArgs(call, data.delta, key)] if call and data.delta else []
        if kind == "response.output_item.added":
            return self._item_added(data.item)
        if kind == "response.output_item.done":
            return self._item_done(data.item)
        if kind == "response.completed":
            return self._usage(getattr(data, "response", None))
        return []

    def _usage(self, response: Any) -> list[Action]:
        usage = getattr(response, "usage", None)
        if usage is None:  # the model reported none (the SDK counts no tokens either)
            return []
        model = getattr(response, "model", None)
        return [Usage(model if isinstance(model, str) else None,
                      getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None),
                      self.key)]  # fmt: skip

    def _item_added(self, item: Any) -> list[Action]:
        if _field(item, "type") != "function_call":
            return []
        call = str(_field(item, "call_id") or _field(item, "id"))
        self.calls[str(_field(item, "id") or call)] = call
        self.call_keys[call] = self.key
        out: list[Action] = [ToolStart(call, str(_field(item, "name") or ""), self.key)]
        if _field(item, "arguments"):
            out.append(ToolArgs(call, str(_field(item, "arguments")), self.key))
        return out

    def _item_done(self, item: Any) -> list[Action]:
        kind = _field(item, "type")
        if kind == "function_call":
            call = self.calls.pop(str(_field(item, "id") or _field(item, "call_id")), None)
            return [ToolEnd(call, self.key)] if call else []
        if kind == "message":
            return [TextEnd(self.key)]
        if kind == "reasoning":
            return [ReasoningEnd(self.key)]
        return []

    def _item(self, name: str, item: Any) -> list[Action]:
        if name not in ("tool_output", "handoff_occured"):
            return []
        raw = getattr(item, "raw_item", None)
        call = _field(raw, "call_id")
        if not call:
            return []
        output = getattr(item, "output", None)
        if output is None:
            output = _field(raw, "output")
        if name == "handoff_occured":
            target = getattr(getattr(item, "target_agent", None), "name", None)
            output = output if output is not None else {"assistant": target}
        content = as_text(output if output is not None else "")
        # An agent used as a tool streamed into its own child run (``child_runs``): done.
        return [Leave(tool_key(str(call))), ToolResult(str(call), content, self.key)]

    def _agent(self, name: str) -> list[Action]:
        if self.agent is None:  # the agent the run starts with answers in the turn's run
            self.agent = name
            return []
        if name == self.agent:
            return []
        out: list[Action] = [Leave(self.key)] if self.key else []
        self.handoffs += 1
        self.agent = name
        self.key = (
            f"{self.base}/handoff-{self.handoffs}" if self.base else f"handoff-{self.handoffs}"
        )
        return [*out, Enter(self.key, name)]


def tool_key(call_id: str) -> str:
    """The key of the child run of an agent that answers the tool call ``call_id``."""
    return f"tool-{call_id}"


async def child_runs(payload: Any) -> None:
    """Pass as ``on_stream=`` to ``agent.as_tool(...)``: the agent used as a tool streams its
    answer into a child run of the run that called it (outside a turn it does nothing)."""
    current = _current.get()
    if current is None:
        return
    driver, outer, nested = current
    call = payload.get("tool_call")
    call_id = str(getattr(call, "call_id", None) or "agent")
    key = tool_key(call_id)
    out: list[Action] = []
    if key not in nested:
        agent = getattr(payload.get("agent"), "name", None) or "agent"
        nested[key] = StreamMapping(key, agent)
        out.append(Enter(key, agent, outer.call_keys.get(call_id, "")))
    out += nested[key].actions(payload.get("event"))
    try:
        await driver.apply(out)
    except Exception as exc:  # the SDK only logs what its callback raises: the turn fails
        driver.fail(exc)
        raise


def unseen(total: Any, reported: dict[str, int]) -> list[Action]:
    """What the SDK counted in the run (``context_wrapper.usage``) beyond the responses we
    saw (an agent used as a tool without ``on_stream=child_runs`` streams none): a report of
    the rest for the turn's run, its model unknown."""
    rest = {name: (token_count(getattr(total, name, None)) or 0) - seen
            for name, seen in reported.items()}  # fmt: skip
    if all(count <= 0 for count in rest.values()):
        return []
    return [Usage(None, max(rest["input_tokens"], 0), max(rest["output_tokens"], 0))]


def handler(
    agent: Any,
    *,
    run_config: Any = None,
    options: Callable[[Turn], dict[str, Any]] | None = None,
    prices: PriceList | None = None,
) -> Handler:
    """A turn handler that answers with ``agent`` (an ``agents.Agent``).

    ``run_config`` is the SDK's ``RunConfig`` to start from (its own
    ``call_model_input_filter`` still runs, before the steers are added); ``options(turn)``
    gives more keyword arguments of ``Runner.run_streamed`` (e.g. ``context``, ``max_turns``);
    ``prices`` (``Prices``, or one per model name) turn the reported tokens into a cost.
    """
    sdk = _agents()

    async def answer(turn: Turn, run: Run) -> None:
        steers: list[str] = []
        given = run_config if run_config is not None else sdk.RunConfig()
        earlier = given.call_model_input_filter

        async def with_steers(data: Any) -> Any:
            model_data = data.model_data
            if earlier is not None:
                model_data = earlier(data)
                if hasattr(model_data, "__await__"):
                    model_data = await model_data
            while (text := run.next_steer()) is not None:
                steers.append(text)
            model_data.input.extend({"role": "user", "content": text} for text in steers)
            return model_data

        config = dataclasses.replace(given, call_model_input_filter=with_steers)
        extra = options(turn) if options is not None else {}

        async def stream(driver: Driver) -> None:
            mapping = StreamMapping()
            # Set before the SDK starts its run task, which copies this context.
            token = _current.set((driver, mapping, {}))
            result = None
            try:
                result = sdk.Runner.run_streamed(
                    agent, [dict(m) for m in turn.messages], run_config=config, **extra
                )
                async for event in result.stream_events():
                    await driver.apply(mapping.actions(event))
                await driver.apply(unseen(result.context_wrapper.usage, driver.tokens))
            finally:
                _current.reset(token)
                if result is not None and not result.is_complete:
                    result.cancel()

        await drive(run, stream, prices)

    return answer
