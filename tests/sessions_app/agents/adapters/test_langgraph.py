"""LangGraph's streams -> actions, recorded off graphs with a scripted LangChain chat model."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions_app.agents.adapters.actions import (
    Custom,
    Enter,
    Leave,
    Reasoning,
    ReasoningEnd,
    State,
    Step,
    Text,
    TextEnd,
    ToolArgs,
    ToolEnd,
    ToolResult,
    ToolStart,
    Usage,
)
from tests.sessions_app.agents.adapters.models import scripted_chat_model

pytest.importorskip("langgraph")
pytestmark = pytest.mark.engine_independent


def recorded(graph, finish=False):
    from sessions_app.agents.adapters.langgraph import STREAM_MODES, ChunkMapping

    async def run():
        mapping, actions = ChunkMapping(), []
        stream = graph.astream({"messages": [{"role": "user", "content": "hi"}]},
                               stream_mode=STREAM_MODES, subgraphs=True)  # fmt: skip
        async for item in stream:
            actions += mapping.actions(item)
        return actions + (mapping.finish() if finish else [])

    return asyncio.run(run())


def test_a_tool_calling_graph_maps_reasoning_tool_calls_steps_and_state():
    from langchain_core.messages import AIMessageChunk
    from langchain_core.tools import tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    @tool
    def weather(city: str) -> str:
        """The weather."""
        return f"sunny in {city}"

    model = scripted_chat_model([
        [AIMessageChunk(content=[{"type": "reasoning", "reasoning": "Paris"}]),
         AIMessageChunk(content="", chunk_position="last", tool_call_chunks=[
             {"name": "weather", "args": '{"city": "Paris"}', "id": "w1", "index": 0}])],
        [AIMessageChunk(content="Sunny."), AIMessageChunk(content="", chunk_position="last")],
    ])  # fmt: skip

    class Conversation(MessagesState):
        turns: int

    async def assistant(state):
        return {"messages": [await model.ainvoke(state["messages"])], "turns": 1}

    graph = StateGraph(Conversation)
    graph.add_node("assistant", assistant)
    graph.add_node("tools", ToolNode([weather]))
    graph.add_edge(START, "assistant")
    graph.add_conditional_edges("assistant", tools_condition)
    graph.add_edge("tools", "assistant")
    # The end of a message closes its reasoning, its text and its tool calls (ending what
    # was never open is a no-op for the run).
    assert recorded(graph.compile()) == [
        Step("assistant"), Reasoning("Paris"),
        ToolStart("w1", "weather"), ToolArgs("w1", '{"city": "Paris"}'),
        ReasoningEnd(), TextEnd(), ToolEnd("w1"), Step("assistant", True), State({"turns": 1}),
        Step("tools"), ToolResult("w1", "sunny in Paris"), Step("tools", True),
        Step("assistant"), Text("Sunny."), ReasoningEnd(), TextEnd(), Step("assistant", True),
    ]  # fmt: skip


def test_a_subgraph_is_a_child_run_left_when_its_node_finishes_and_custom_writes_map():
    from langchain_core.messages import AIMessageChunk
    from langgraph.config import get_stream_writer
    from langgraph.graph import START, MessagesState, StateGraph

    model = scripted_chat_model([[AIMessageChunk(content="Found.", chunk_position="last")]])

    async def researcher(state):
        get_stream_writer()({"name": "progress", "value": 1})
        return {"messages": [await model.ainvoke(state["messages"])]}

    research = StateGraph(MessagesState)
    research.add_node("researcher", researcher)
    research.add_edge(START, "researcher")
    graph = StateGraph(MessagesState)
    graph.add_node("research", research.compile())
    graph.add_edge(START, "research")
    actions = recorded(graph.compile())
    [enter] = [a for a in actions if isinstance(a, Enter)]
    child = enter.key
    assert enter == Enter(child, "research", "")
    assert child.startswith("research:")
    assert actions[actions.index(enter) :] == [
        enter, Step("researcher", key=child), Custom("progress", 1, child),
        Text("Found.", child), ReasoningEnd(child), TextEnd(child),
        Step("researcher", True, child),
        Step("research", True), Leave(child),
    ]  # fmt: skip


def test_each_message_reports_its_usage_metadata_in_the_run_it_streamed_in():
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langgraph.graph import START, MessagesState, StateGraph

    def tokens(given, taken):
        return {"input_tokens": given, "output_tokens": taken, "total_tokens": given + taken}

    # Streamed: the input tokens on the first chunk, the output on the next (as Anthropic
    # streams them).
    streamed = scripted_chat_model([[
        AIMessageChunk(content="Look", usage_metadata=tokens(120, 0)),
        AIMessageChunk(content="ing.", usage_metadata=tokens(0, 9),
                       response_metadata={"model_name": "big-1"}),
    ]])  # fmt: skip
    # Not streamed: the whole message, with its usage, as a node's model returned it.
    whole = GenericFakeChatModel(disable_streaming=True, messages=iter([AIMessage(
        "Found.", usage_metadata=tokens(40, 3), response_metadata={"model_name": "small-1"})]))  # fmt: skip

    async def researcher(state):
        return {"messages": [await whole.ainvoke(state["messages"])]}

    async def assistant(state):
        return {"messages": [await streamed.ainvoke(state["messages"])]}

    research = StateGraph(MessagesState)
    research.add_node("researcher", researcher)
    research.add_edge(START, "researcher")
    graph = StateGraph(MessagesState)
    graph.add_node("research", research.compile())
    graph.add_node("assistant", assistant)
    graph.add_edge(START, "research")
    graph.add_edge("research", "assistant")
    actions = recorded(graph.compile(), finish=True)
    [enter] = [a for a in actions if isinstance(a, Enter)]
    reports = [a for a in actions if isinstance(a, Usage)]
    assert reports == [Usage("small-1", 40, 3, enter.key), Usage("big-1", 120, 9)]
    assert actions.index(reports[0]) < actions.index(Leave(enter.key))  # before its run ends
    assert actions[-3:] == [TextEnd(), reports[1], Step("assistant", True)]  # at its end


def test_a_message_the_stream_left_open_reports_its_usage_at_the_end():
    from langchain_core.messages import AIMessageChunk

    from sessions_app.agents.adapters.langgraph import ChunkMapping

    mapping = ChunkMapping()
    tokens = {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}
    chunk = AIMessageChunk(content="Hi", id="m1", usage_metadata=tokens)
    assert mapping.actions(((), "messages", (chunk, {"ls_model_name": "tiny-2"}))) == [Text("Hi")]
    assert mapping.finish() == [Usage("tiny-2", 7, 2)]  # the model name from the stream's
    assert mapping.finish() == []


@settings(max_examples=20, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=10))
def test_text_in_any_chunks_arrives_whole_in_one_message(chunks):
    from langchain_core.messages import AIMessageChunk
    from langgraph.graph import START, MessagesState, StateGraph

    script = [AIMessageChunk(content=c) for c in chunks]
    model = scripted_chat_model([[*script, AIMessageChunk(content="", chunk_position="last")]])

    async def assistant(state):
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("assistant", assistant)
    graph.add_edge(START, "assistant")
    texts = [a for a in recorded(graph.compile()) if isinstance(a, Text | TextEnd)]
    assert texts == [*(Text(c) for c in chunks), TextEnd()]
