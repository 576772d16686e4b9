"""pydantic-ai's stream events -> actions, from events recorded off its own FunctionModel."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions_app.agents.adapters.actions import (
    Reasoning,
    ReasoningEnd,
    Text,
    TextEnd,
    ToolArgs,
    ToolEnd,
    ToolResult,
    ToolStart,
    coalesce,
)

pydantic_ai = pytest.importorskip("pydantic_ai")
pytestmark = pytest.mark.engine_independent


def recorded(stream_function, tools=(), context_tools=()):
    """The actions of a whole run of an agent on ``stream_function``, as the adapter maps them."""
    from pydantic_ai import Agent
    from pydantic_ai.models.function import FunctionModel

    from sessions_app.agents.adapters.pydantic_ai import EventMapping

    agent = Agent(FunctionModel(stream_function=stream_function))
    for tool in tools:
        agent.tool_plain(tool)
    for tool in context_tools:
        agent.tool(tool)

    async def run():
        actions = []
        async with agent.iter("hi") as agent_run:
            async for node in agent_run:
                if Agent.is_model_request_node(node) or Agent.is_call_tools_node(node):
                    mapping = EventMapping()
                    async with node.stream(agent_run.ctx) as events:
                        async for event in events:
                            actions += mapping.actions(event)
        return actions

    return asyncio.run(run())


def test_thinking_a_streamed_tool_call_its_result_and_text_map_in_order():
    from pydantic_ai.messages import ToolReturnPart
    from pydantic_ai.models.function import DeltaThinkingPart, DeltaToolCall

    async def model(messages, info):
        if not any(isinstance(p, ToolReturnPart) for m in messages for p in m.parts):
            yield {0: DeltaThinkingPart(content="Paris, ")}
            yield {0: DeltaThinkingPart(content="so ask")}
            yield {1: DeltaToolCall(name="weather", json_args='{"city":', tool_call_id="w1")}
            yield {1: DeltaToolCall(json_args=' "Paris"}')}
        else:
            yield "It is "
            yield "sunny."

    def weather(city: str) -> str:
        return f"sunny in {city}"

    assert recorded(model, [weather]) == [
        Reasoning("Paris, "), Reasoning("so ask"), ReasoningEnd(),
        ToolStart("w1", "weather"), ToolArgs("w1", '{"city":'), ToolArgs("w1", ' "Paris"}'),
        ToolEnd("w1"), ToolResult("w1", "sunny in Paris"),
        Text("It is "), Text("sunny."), TextEnd(),
    ]  # fmt: skip


def test_a_tool_returning_data_gives_its_json():
    from pydantic_ai.messages import ToolReturnPart
    from pydantic_ai.models.function import DeltaToolCall

    async def model(messages, info):
        if not any(isinstance(p, ToolReturnPart) for m in messages for p in m.parts):
            yield {0: DeltaToolCall(name="forecast", json_args="{}", tool_call_id="f1")}
        else:
            yield "Done."

    def forecast() -> dict:
        return {"days": [1, 2], "unit": "°C"}

    [result] = [a for a in recorded(model, [forecast]) if isinstance(a, ToolResult)]
    assert result == ToolResult("f1", '{"days": [1, 2], "unit": "°C"}')


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=12))
def test_text_streamed_in_any_chunks_arrives_whole_in_one_message(chunks):
    async def model(messages, info):
        for chunk in chunks:
            yield chunk

    actions = coalesce(recorded(model))
    assert "".join(a.delta for a in actions if isinstance(a, Text)) == "".join(chunks)
    assert actions[-1] == TextEnd()
    assert all(isinstance(a, Text | TextEnd) for a in actions)


def test_a_custom_event_a_tool_emits_keeps_its_name_and_fields():
    from dataclasses import dataclass

    from pydantic_ai import CustomEvent
    from pydantic_ai.messages import ToolReturnPart
    from pydantic_ai.models.function import DeltaToolCall

    @dataclass(kw_only=True)
    class DownloadProgress(CustomEvent):
        done: int
        total: int

    async def model(messages, info):
        if not any(isinstance(p, ToolReturnPart) for m in messages for p in m.parts):
            yield {0: DeltaToolCall(name="download", json_args="{}", tool_call_id="d1")}
        else:
            yield "Done."

    async def download(ctx: pydantic_ai.RunContext) -> str:
        await ctx.emit(DownloadProgress(done=1, total=2))
        return "ok"

    from sessions_app.agents.adapters.actions import Custom

    customs = [a for a in recorded(model, context_tools=[download]) if isinstance(a, Custom)]
    assert customs == [Custom("download_progress", {"done": 1, "total": 2})]
