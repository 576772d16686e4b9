"""The OpenAI Agents SDK's stream events -> actions, recorded off a scripted ``Model``."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions_app.agents.adapters.actions import (
    Enter,
    Leave,
    Reasoning,
    ReasoningEnd,
    Text,
    TextEnd,
    ToolArgs,
    ToolEnd,
    ToolResult,
    ToolStart,
    Usage,
)
from tests.sessions_app.agents.adapters.models import scripted_agents_model

pytest.importorskip("agents")
pytestmark = pytest.mark.engine_independent


def recorded(agent):
    from agents import RunConfig, Runner

    from sessions_app.agents.adapters.openai_agents import StreamMapping

    async def run():
        result = Runner.run_streamed(agent, "hi", run_config=RunConfig(tracing_disabled=True))
        mapping, actions = StreamMapping(), []
        async for event in result.stream_events():
            actions += mapping.actions(event)
        return actions

    return asyncio.run(run())


def test_reasoning_a_tool_call_and_a_handoff_into_a_child_run():
    from agents import Agent, function_tool

    @function_tool
    def weather(city: str) -> str:
        """The weather."""
        return f"sunny in {city}"

    billing = Agent(name="billing", model=scripted_agents_model([[("text", ["Paid."])]]))
    triage = Agent(name="triage", tools=[weather], handoffs=[billing], model=scripted_agents_model([
        [("reasoning", ["Paris, ", "so ask"]), ("call", "weather", "w1", ['{"city":', ' "Paris"}'])],
        [("text", ["Sunny. "]), ("call", "transfer_to_billing", "h1", ["{}"])],
    ]))  # fmt: skip
    actions = recorded(triage)
    handoff = actions.index(Enter("handoff-1", "billing"))
    assert actions[:handoff] == [
        Reasoning("Paris, "), Reasoning("so ask"), ReasoningEnd(),
        ToolStart("w1", "weather"), ToolArgs("w1", '{"city":'), ToolArgs("w1", ' "Paris"}'),
        ToolEnd("w1"), Leave("tool-w1"), ToolResult("w1", "sunny in Paris"),
        Text("Sunny. "), TextEnd(),
        ToolStart("h1", "transfer_to_billing"), ToolArgs("h1", "{}"), ToolEnd("h1"),
        Leave("tool-h1"), actions[handoff - 1],
    ]  # fmt: skip
    assert (
        isinstance(actions[handoff - 1], ToolResult) and "billing" in actions[handoff - 1].content
    )
    assert actions[handoff + 1 :] == [Text("Paid.", "handoff-1"), TextEnd("handoff-1")]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=10))
def test_text_in_any_chunks_arrives_whole(chunks):
    from agents import Agent

    actions = recorded(Agent(name="a", model=scripted_agents_model([[("text", chunks)]])))
    assert actions == [*(Text(c) for c in chunks), TextEnd()]


def test_each_response_reports_its_usage_in_the_run_of_the_agent_that_made_it():
    from agents import Agent, RunConfig, Runner

    from sessions_app.agents.adapters.openai_agents import StreamMapping

    billing = Agent(name="billing", model=scripted_agents_model(
        [[("text", ["Paid."])]], usage=(30, 4), model_name="small"))  # fmt: skip
    triage = Agent(name="triage", handoffs=[billing], model=scripted_agents_model(
        [[("call", "transfer_to_billing", "h1", ["{}"])]], usage=(100, 7), model_name="big"))  # fmt: skip

    async def run():
        result = Runner.run_streamed(triage, "hi", run_config=RunConfig(tracing_disabled=True))
        mapping, actions = StreamMapping(), []
        async for event in result.stream_events():
            actions += mapping.actions(event)
        return actions, result.context_wrapper.usage

    actions, total = asyncio.run(run())
    reports = [a for a in actions if isinstance(a, Usage)]
    # The handoff's call is the triage agent's (the turn's run), the answer billing's.
    assert reports == [Usage("big", 100, 7), Usage("small", 30, 4, "handoff-1")]
    assert (total.input_tokens, total.output_tokens) == (130, 11)  # what the SDK counted
    assert actions.index(reports[0]) < actions.index(Enter("handoff-1", "billing"))
