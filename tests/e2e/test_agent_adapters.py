"""The framework adapters against a live server: each framework's own offline test model
answers a turn through a real SDK run, and a user sees the text, the tool calls, the child
runs and a cancel that stops the framework's run (the tool after it never runs).

One server for the module; each test has its own session.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sessions_app.agents.base import Turn
from sessions_app.client import SessionsClient
from tests.e2e import screen
from tests.e2e.screen import text_of, tool_calls
from tests.e2e.servers import api_key_for, daphne_server, site_database
from tests.sessions_app.agents.adapters.models import scripted_agents_model, scripted_chat_model

# The adapters are clients of the doors; the engines behind them are not their subject.
pytestmark = [pytest.mark.e2e, pytest.mark.engine_independent]
names = itertools.count()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with site_database(tmp_path_factory.mktemp("adapters"), "adapters") as env:
        key = api_key_for(env, user="agent")
        with daphne_server(env) as base:
            yield {"base": base, "key": key}


def new_session(site) -> str:
    return screen.new_session(site, f"adapters-{next(names)}")


def history(site, session):
    return screen.history(site, session)


def turn_for(session: str, text: str, run_id: str, earlier=()) -> Turn:
    messages = [*earlier, {"role": "user", "content": text}]
    return Turn(id=1, session=session, message="u-1", text=text, agent="assistant", attempt=1,
                run_id=run_id, messages=messages)  # fmt: skip


async def answer(site, session, handler, text, *, during=None, earlier=()):
    """Open a run as the worker does, call ``handler`` in it; ``during(client, run)`` runs
    beside it (a user's device). Returns the run's id."""
    async with SessionsClient(site["base"], api_key=site["key"]) as client:
        live = await client.session(session)
        async with live.run(agent="assistant") as run:
            work = handler(turn_for(session, text, run.id, earlier), run)
            # A bound for a hung handler, not a speed check: at CI's load 9-13 an answer with a
            # cancel took longer than the 30 s this was (session 12's openai_agents cancel).
            if during is None:
                await asyncio.wait_for(work, 90)
            else:
                await asyncio.wait_for(asyncio.gather(work, during(client, run)), 90)
        return run.id


def of_run(events, run_id):
    return [e for e in events if e.get("run") == run_id]


def outcome(events, run_id):
    ends = [e for e in of_run(events, run_id) if e["type"] in ("RUN_FINISHED", "RUN_ERROR")]
    assert len(ends) == 1, ends
    return ends[0]["type"], ends[0].get("data", {}).get("outcome")


def usage_of(events):
    """The usage reports among ``events``."""
    return [e["data"]["value"] for e in events
            if e["type"] == "CUSTOM" and e["data"]["name"] == "sessions.USAGE"]  # fmt: skip


def children(events, run_id):
    return {
        e["run"]: e.get("agent")
        for e in events
        if e["type"] == "RUN_STARTED" and e.get("data", {}).get("parentRunId") == run_id
    }


async def until(predicate, timeout=60.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("the condition never held")
        await asyncio.sleep(0.01)


async def cancel_when(client, run, predicate):
    """A user's device: wait until ``predicate()`` holds, then press stop."""
    await until(predicate)
    await client.sessions[run.session.name].cancel(run.id)


# --- pydantic-ai ---------------------------------------------------------------------------

try:
    from pydantic import BaseModel
    from pydantic_ai import RunContext
    from pydantic_ai.ui import StateDeps

    class Trip(BaseModel):
        city: str | None = None
except ImportError:  # without the extra, the pydantic-ai tests fail on their own imports
    pass


def test_pydantic_ai_streams_text_reasoning_tool_calls_and_a_sub_agent(site):
    from pydantic_ai import Agent
    from pydantic_ai.messages import ToolReturnPart
    from pydantic_ai.models.function import DeltaThinkingPart, DeltaToolCall, FunctionModel
    from pydantic_ai.models.test import TestModel

    from sessions_app.agents.adapters.pydantic_ai import delegate, handler

    async def model(messages, info):
        returned = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if not returned:
            yield {0: DeltaThinkingPart(content="Paris, ")}
            yield {0: DeltaThinkingPart(content="so ask the weather")}
            yield {1: DeltaToolCall(name="weather", json_args='{"city":', tool_call_id="w1")}
            yield {1: DeltaToolCall(json_args=' "Paris"}')}
            yield {2: DeltaToolCall(name="research", json_args='{"topic": "Paris"}',
                                    tool_call_id="r1")}  # fmt: skip
        else:
            for token in ["It is ", "sunny ", "in Paris."]:
                yield token

    researcher = Agent(TestModel(custom_output_text="Three good museums."), name="researcher")
    assistant = Agent(FunctionModel(stream_function=model), deps_type=StateDeps[Trip])

    @assistant.tool
    def weather(ctx: RunContext[StateDeps[Trip]], city: str) -> str:
        ctx.deps.state.city = city
        return f"sunny in {city}"

    @assistant.tool_plain
    async def research(topic: str) -> str:
        return await delegate(researcher, f"find out about {topic}")

    session = new_session(site)
    options = lambda turn: {"deps": StateDeps(Trip())}  # noqa: E731
    run_id = asyncio.run(answer(site, session, handler(assistant, options=options), "Paris?"))
    events = history(site, session)
    mine = of_run(events, run_id)
    assert text_of(mine) == "It is sunny in Paris."
    states = [e["data"]["snapshot"] for e in mine if e["type"] == "STATE_SNAPSHOT"]
    assert states == [{"city": None}, {"city": "Paris"}]
    reasoning = [e["data"]["delta"] for e in mine if e["type"] == "REASONING_MESSAGE_CONTENT"]
    assert "".join(reasoning) == "Paris, so ask the weather"
    calls = tool_calls(mine)
    assert calls["w1"] == {"name": "weather", "args": '{"city": "Paris"}', "ended": True,
                           "result": "sunny in Paris"}  # fmt: skip
    assert calls["r1"]["result"] == "Three good museums."
    [(child, agent)] = children(events, run_id).items()
    assert agent == "researcher"
    assert text_of(of_run(events, child)) == "Three good museums."
    assert outcome(events, child) == ("RUN_FINISHED", "success")
    assert outcome(events, run_id) == ("RUN_FINISHED", "success")
    usage = {r: [e["data"]["value"] for e in of_run(events, r) if e["type"] == "CUSTOM"
                 and e["data"]["name"] == "sessions.USAGE"] for r in (run_id, child)}  # fmt: skip
    [[parent_usage], [child_usage]] = usage.values()  # each run reports its own, once
    assert parent_usage["input_tokens"] > 0 and parent_usage["output_tokens"] > 0
    assert child_usage["model"] == "test" and child_usage["output_tokens"] > 0


def test_pydantic_ai_cancel_stops_the_agent_before_its_next_tool(site):
    from pydantic_ai import Agent
    from pydantic_ai.models.function import DeltaToolCall, FunctionModel

    from sessions_app.agents.adapters.pydantic_ai import handler

    seen = {"launched": 0, "stream_closed": False, "text_out": False}

    async def model(messages, info):
        try:
            yield "Counting down "
            seen["text_out"] = True
            # The user presses stop while the model still streams; longer than the test waits.
            await asyncio.sleep(60)
            yield {1: DeltaToolCall(name="launch", json_args="{}", tool_call_id="l1")}
        finally:
            seen["stream_closed"] = True

    assistant = Agent(FunctionModel(stream_function=model))

    @assistant.tool_plain
    def launch() -> str:
        seen["launched"] += 1
        return "launched"

    async def device(client, run):
        await cancel_when(client, run, lambda: seen["text_out"])

    session = new_session(site)
    run_id = asyncio.run(answer(site, session, handler(assistant), "Launch", during=device))
    events = history(site, session)
    assert seen == {"launched": 0, "stream_closed": True, "text_out": True}
    assert text_of(of_run(events, run_id)) == "Counting down "
    assert outcome(events, run_id) == ("RUN_FINISHED", "cancelled")


def test_pydantic_ai_cancelling_the_turn_ends_its_sub_agents_run_cancelled(site):
    from pydantic_ai import Agent
    from pydantic_ai.models.function import DeltaToolCall, FunctionModel

    from sessions_app.agents.adapters.pydantic_ai import delegate, handler

    seen = {"researching": False}

    async def slow_research(messages, info):
        yield "Looking "
        seen["researching"] = True
        await asyncio.sleep(60)  # longer than the test waits: only a cancel ends it
        yield "further."

    async def model(messages, info):
        yield {0: DeltaToolCall(name="research", json_args="{}", tool_call_id="r1")}

    researcher = Agent(FunctionModel(stream_function=slow_research), name="researcher")
    assistant = Agent(FunctionModel(stream_function=model))

    @assistant.tool_plain
    async def research() -> str:
        return await delegate(researcher, "dig")

    async def device(client, run):
        await cancel_when(client, run, lambda: seen["researching"])

    session = new_session(site)
    run_id = asyncio.run(answer(site, session, handler(assistant), "Dig", during=device))
    events = history(site, session)
    [(child, _agent)] = children(events, run_id).items()
    assert outcome(events, run_id) == ("RUN_FINISHED", "cancelled")
    assert outcome(events, child) == ("RUN_FINISHED", "cancelled")
    assert text_of(of_run(events, child)) == "Looking "
    assert "result" not in tool_calls(of_run(events, run_id))["r1"]


def test_pydantic_ai_takes_a_steer_at_its_next_model_request(site):
    from pydantic_ai import Agent
    from pydantic_ai.messages import ToolReturnPart, UserPromptPart
    from pydantic_ai.models.function import DeltaToolCall, FunctionModel

    from sessions_app.agents.adapters.pydantic_ai import handler

    steered = asyncio.Event()
    prompts = []

    async def model(messages, info):
        prompts.append([p.content for m in messages for p in m.parts
                        if isinstance(p, UserPromptPart)])  # fmt: skip
        if not any(isinstance(p, ToolReturnPart) for m in messages for p in m.parts):
            yield {0: DeltaToolCall(name="look", json_args="{}", tool_call_id="k1")}
        else:
            yield "Bonjour."

    assistant = Agent(FunctionModel(stream_function=model))

    @assistant.tool_plain
    async def look() -> str:
        await asyncio.wait_for(steered.wait(), 10)  # the steer arrives while the tool runs
        return "looked"

    session = new_session(site)
    session_events = []

    async def device(client, run):
        live = client.sessions[session]
        await until(lambda: tool_calls(session_events))
        await live.steer(run.id, "answer in French")
        # The run has the steer once its STEER event arrived, and the adapter has handed it
        # to the agent once the run's queue of steers is empty again.
        await until(lambda: any(e["type"] == "STEER" for e in session_events))
        await until(lambda: run.pending_steers == 0)
        steered.set()

    async def scenario():
        async with SessionsClient(site["base"], api_key=site["key"]) as client:
            live = await client.session(session)
            listener = asyncio.create_task(collect(live, session_events))
            async with live.run(agent="assistant") as run:
                work = handler(assistant)(turn_for(session, "Hi", run.id), run)
                await asyncio.wait_for(asyncio.gather(work, device(client, run)), 30)
            listener.cancel()
            return run.id

    run_id = asyncio.run(scenario())
    assert prompts[0] == ["Hi"]
    assert prompts[-1] == ["Hi", "answer in French"]
    assert text_of(of_run(history(site, session), run_id)) == "Bonjour."


def test_long_reasoning_and_tool_calls_land_whole_in_few_appends_and_a_huge_result_is_cut(site):
    from pydantic_ai import Agent
    from pydantic_ai.messages import ToolReturnPart
    from pydantic_ai.models.function import DeltaThinkingPart, DeltaToolCall, FunctionModel

    from sessions_app.agents.adapters.pydantic_ai import handler

    thoughts = [f"thought {i}; " for i in range(400)]
    note = "é" * 30_000  # 60 kB as UTF-8: more than one event holds

    async def model(messages, info):
        if not any(isinstance(p, ToolReturnPart) for m in messages for p in m.parts):
            for thought in thoughts:
                yield {0: DeltaThinkingPart(content=thought)}
            yield {1: DeltaToolCall(name="save", json_args='{"note": "', tool_call_id="s1")}
            for i in range(0, len(note), 100):
                yield {1: DeltaToolCall(json_args=note[i : i + 100])}
            yield {1: DeltaToolCall(json_args='"}')}
        else:
            yield "Saved."

    assistant = Agent(FunctionModel(stream_function=model))

    @assistant.tool_plain
    def save(note: str) -> str:
        return note * 2  # 120 kB: shown cut, the model gets it all

    session = new_session(site)
    run_id = asyncio.run(answer(site, session, handler(assistant), "Save it"))
    mine = of_run(history(site, session), run_id)
    reasoning = [e["data"]["delta"] for e in mine if e["type"] == "REASONING_MESSAGE_CONTENT"]
    assert "".join(reasoning) == "".join(thoughts)
    assert len(reasoning) < 40, f"{len(reasoning)} appends for 400 thinking tokens"
    call = tool_calls(mine)["s1"]
    assert json.loads(call["args"]) == {"note": note}
    args = [e for e in mine if e["type"] == "TOOL_CALL_ARGS"]
    assert 2 <= len(args) < 40, f"{len(args)} appends for 300 argument chunks"
    shown, left_out = call["result"].rsplit("\n[… ", 1)
    assert shown and (note * 2).startswith(shown)
    assert left_out == f"{len(note) * 2 - len(shown)} more characters not shown]"
    assert text_of(mine) == "Saved."
    assert outcome(history(site, session), run_id) == ("RUN_FINISHED", "success")


async def collect(session, into):
    async for event in session.events():
        into.append(event)


# --- LangGraph -----------------------------------------------------------------------------


def test_langgraph_streams_text_tool_calls_state_steps_and_a_subgraph(site):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langchain_core.tools import tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from sessions_app.agents.adapters.actions import Prices
    from sessions_app.agents.adapters.langgraph import handler

    @tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    def used(given, taken):  # a chunk's usage_metadata, and the model's name
        return {"usage_metadata": {"input_tokens": given, "output_tokens": taken,
                                   "total_tokens": given + taken},
                "response_metadata": {"model_name": "big-1"}}  # fmt: skip

    model = scripted_chat_model([
        [AIMessageChunk(content=[{"type": "reasoning", "reasoning": "Paris, so ask"}]),
         AIMessageChunk(content="", tool_call_chunks=[
             {"name": "weather", "args": '{"city":', "id": "w1", "index": 0}]),
         AIMessageChunk(content="", chunk_position="last", tool_call_chunks=[
             {"name": None, "args": ' "Paris"}', "id": None, "index": 0}], **used(100, 20))],
        [AIMessageChunk(content="It is "),
         AIMessageChunk(content="sunny.", chunk_position="last", **used(130, 3))],
    ])  # fmt: skip

    class Conversation(MessagesState):
        checked: int

    async def assistant(state):
        reply = await model.ainvoke(state["messages"])
        return {"messages": [reply], "checked": state.get("checked", 0) + 1}

    research = StateGraph(MessagesState)
    museums = GenericFakeChatModel(messages=iter([AIMessage(content="Three good museums.")]))

    async def researcher(state):
        return {"messages": [await museums.ainvoke(state["messages"])]}

    research.add_node("researcher", researcher)
    research.add_edge(START, "researcher")

    graph = StateGraph(Conversation)
    graph.add_node("assistant", assistant)
    graph.add_node("tools", ToolNode([weather]))
    graph.add_node("research", research.compile())
    graph.add_edge(START, "assistant")
    graph.add_conditional_edges(
        "assistant", tools_condition, {"tools": "tools", "__end__": "research"}
    )
    graph.add_edge("tools", "assistant")

    session = new_session(site)
    prices = {"big-1": Prices(input=1.0, output=10.0)}  # per million tokens
    given = handler(graph.compile(), prices=prices)
    run_id = asyncio.run(answer(site, session, given, "Weather in Paris?"))
    events = history(site, session)
    mine = of_run(events, run_id)
    assert text_of(mine) == "It is sunny."
    first, second = usage_of(mine)  # one report per model call, each priced and timed
    assert (first["model"], first["input_tokens"], first["output_tokens"]) == ("big-1", 100, 20)
    assert first["cost"] == pytest.approx(300e-6) and first["currency"] == "USD"
    assert 0 <= first["first_token_ms"] <= first["latency_ms"]
    assert (second["input_tokens"], second["output_tokens"]) == (130, 3)
    assert "first_token_ms" not in second and second["latency_ms"] >= 0
    reasoning = [e["data"]["delta"] for e in mine if e["type"] == "REASONING_MESSAGE_CONTENT"]
    assert reasoning == ["Paris, so ask"]
    assert tool_calls(mine) == {"w1": {"name": "weather", "args": '{"city": "Paris"}',
                                       "ended": True, "result": "sunny in Paris"}}  # fmt: skip
    states = [e["data"]["snapshot"] for e in mine if e["type"] == "STATE_SNAPSHOT"]
    assert states == [{"checked": 1}, {"checked": 2}]
    steps = [(e["type"], e["data"]["stepName"]) for e in mine if e["type"].startswith("STEP_")]
    assert steps[:2] == [("STEP_STARTED", "assistant"), ("STEP_FINISHED", "assistant")]
    assert ("STEP_FINISHED", "research") in steps
    [(child, agent)] = children(events, run_id).items()
    assert agent == "research"
    assert text_of(of_run(events, child)) == "Three good museums."
    assert usage_of(of_run(events, child)) == []  # its model reported no usage
    assert outcome(events, child) == ("RUN_FINISHED", "success")
    assert outcome(events, run_id) == ("RUN_FINISHED", "success")


def test_langgraph_cancel_stops_the_graph_before_its_next_node(site):
    from langgraph.config import get_stream_writer
    from langgraph.graph import START, MessagesState, StateGraph

    from sessions_app.agents.adapters.langgraph import handler

    seen = {"launched": 0, "node_stopped": False, "progress": False}

    async def count_down(state):
        get_stream_writer()({"name": "progress", "value": 3})
        try:
            # The user presses stop while this node works; longer than the test waits.
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen["node_stopped"] = True
            raise
        return {}

    async def launch(state):
        seen["launched"] += 1
        return {}

    graph = StateGraph(MessagesState)
    graph.add_node("count_down", count_down)
    graph.add_node("launch", launch)
    graph.add_edge(START, "count_down")
    graph.add_edge("count_down", "launch")

    session = new_session(site)
    events_seen = []

    async def device(client, run):
        live = client.sessions[session]
        listener = asyncio.create_task(collect(live, events_seen))
        await until(lambda: any(e["type"] == "CUSTOM" for e in events_seen))
        seen["progress"] = True
        await live.cancel(run.id)
        listener.cancel()

    run_id = asyncio.run(answer(site, session, handler(graph.compile()), "Launch", during=device))
    events = history(site, session)
    assert seen == {"launched": 0, "node_stopped": True, "progress": True}
    custom = [e["data"] for e in of_run(events, run_id) if e["type"] == "CUSTOM"]
    assert custom == [{"name": "progress", "value": 3}]
    assert outcome(events, run_id) == ("RUN_FINISHED", "cancelled")


def test_langgraph_a_node_takes_the_steers_sent_while_the_graph_ran(site):
    from langchain_core.messages import AIMessageChunk
    from langgraph.graph import START, MessagesState, StateGraph

    from sessions_app.agents.adapters.langgraph import handler, take_steers

    steered = asyncio.Event()
    model = scripted_chat_model([[AIMessageChunk(content="Bonjour.", chunk_position="last")]])
    given = []

    async def look(state):
        await asyncio.wait_for(steered.wait(), 10)  # the steer arrives while this node runs
        return {}

    async def assistant(state):
        messages = state["messages"] + take_steers()
        given.append(messages)
        return {"messages": [await model.ainvoke(messages)]}

    graph = StateGraph(MessagesState)
    graph.add_node("look", look)
    graph.add_node("assistant", assistant)
    graph.add_edge(START, "look")
    graph.add_edge("look", "assistant")
    session = new_session(site)
    session_events = []

    async def device(client, run):
        live = client.sessions[session]
        listener = asyncio.create_task(collect(live, session_events))
        await until(lambda: any(e["type"] == "STEP_STARTED" for e in session_events))
        await live.steer(run.id, "answer in French")
        await until(lambda: any(e["type"] == "STEER" for e in session_events))
        steered.set()
        listener.cancel()

    run_id = asyncio.run(answer(site, session, handler(graph.compile()), "Hi", during=device))
    [messages] = given
    assert messages[-1] == {"role": "user", "content": "answer in French"}
    assert messages[0].content == "Hi"
    assert text_of(of_run(history(site, session), run_id)) == "Bonjour."


# --- OpenAI Agents SDK ---------------------------------------------------------------------


def untraced():
    from agents import RunConfig

    return RunConfig(tracing_disabled=True)  # nothing leaves the machine


def test_openai_agents_stream_text_reasoning_tool_calls_and_a_handoff(site):
    from agents import Agent, function_tool

    from sessions_app.agents.adapters.actions import Prices
    from sessions_app.agents.adapters.openai_agents import handler

    @function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    billing = Agent(name="billing", model=scripted_agents_model(
        [[("text", ["Your bill ", "is paid."])]], usage=(50, 6), model_name="small"))  # fmt: skip
    triage = Agent(name="triage", tools=[weather], handoffs=[billing], model=scripted_agents_model([
        [("reasoning", ["Paris, ", "so ask"]), ("call", "weather", "w1", ['{"city":', ' "Paris"}'])],
        [("text", ["Sunny. "]), ("call", "transfer_to_billing", "h1", ["{}"])],
    ], usage=(100, 10), model_name="big"))  # fmt: skip

    session = new_session(site)
    prices = {"big": Prices(input=2.0, output=8.0, currency="EUR")}  # "small" has none
    given = handler(triage, run_config=untraced(), prices=prices)
    run_id = asyncio.run(answer(site, session, given, "Hi"))
    events = history(site, session)
    mine = of_run(events, run_id)
    assert text_of(mine) == "Sunny. "
    first, second = usage_of(mine)  # the triage agent's two model calls
    assert (first["model"], first["input_tokens"], first["output_tokens"]) == ("big", 100, 10)
    assert first["cost"] == pytest.approx(280e-6) and first["currency"] == "EUR"
    assert 0 <= first["first_token_ms"] <= first["latency_ms"]
    assert second["input_tokens"] == 100 and "first_token_ms" not in second
    reasoning = [e["data"]["delta"] for e in mine if e["type"] == "REASONING_MESSAGE_CONTENT"]
    assert "".join(reasoning) == "Paris, so ask"
    calls = tool_calls(mine)
    assert calls["w1"] == {"name": "weather", "args": '{"city": "Paris"}', "ended": True,
                           "result": "sunny in Paris"}  # fmt: skip
    assert calls["h1"]["name"] == "transfer_to_billing" and "billing" in calls["h1"]["result"]
    [(child, agent)] = children(events, run_id).items()
    assert agent == "billing"
    assert text_of(of_run(events, child)) == "Your bill is paid."
    [billed] = usage_of(of_run(events, child))  # the agent handed to reports in its own run
    assert (billed["model"], billed["input_tokens"], billed["output_tokens"]) == ("small", 50, 6)
    assert "cost" not in billed
    assert outcome(events, child) == ("RUN_FINISHED", "success")
    assert outcome(events, run_id) == ("RUN_FINISHED", "success")


def test_openai_agents_an_agent_used_as_a_tool_streams_into_a_child_run(site):
    from agents import Agent

    from sessions_app.agents.adapters.openai_agents import child_runs, handler

    researcher = Agent(
        name="researcher", model=scripted_agents_model([[("text", ["Three ", "museums."])]])
    )
    research = researcher.as_tool(tool_name="research", tool_description="Research a topic.",
                                  on_stream=child_runs)  # fmt: skip
    manager = Agent(name="manager", tools=[research], model=scripted_agents_model([
        [("call", "research", "r1", ['{"input": "Paris"}'])],
        [("text", ["See the museums."])],
    ]))  # fmt: skip
    session = new_session(site)
    run_id = asyncio.run(answer(site, session, handler(manager, run_config=untraced()), "Paris?"))
    events = history(site, session)
    assert text_of(of_run(events, run_id)) == "See the museums."
    assert tool_calls(of_run(events, run_id))["r1"]["result"] == "Three museums."
    [(child, agent)] = children(events, run_id).items()
    assert agent == "researcher"
    assert text_of(of_run(events, child)) == "Three museums."
    assert outcome(events, child) == ("RUN_FINISHED", "success")
    finished = [e["offset"] for e in events if e["type"] == "RUN_FINISHED" and e["run"] == child]
    result = [e["offset"] for e in events if e["type"] == "TOOL_CALL_RESULT"]
    assert finished < result  # the sub-agent's run ends before its answer is the tool's result


def test_openai_agents_usage_adds_up_to_what_the_sdk_counted(site):
    from agents import Agent

    from sessions_app.agents.adapters.openai_agents import handler

    # An agent used as a tool without on_stream: its model call is not streamed to us.
    researcher = Agent(name="researcher", model=scripted_agents_model(
        [[("text", ["Three museums."])]], usage=(40, 4), model_name="small"))  # fmt: skip
    research = researcher.as_tool(tool_name="research", tool_description="Research a topic.")
    manager = Agent(name="manager", tools=[research], model=scripted_agents_model(
        [[("call", "research", "r1", ['{"input": "Paris"}'])], [("text", ["See them."])]],
        usage=(100, 10), model_name="big"))  # fmt: skip
    session = new_session(site)
    run_id = asyncio.run(answer(site, session, handler(manager, run_config=untraced()), "Paris?"))
    events = history(site, session)
    reports = usage_of(of_run(events, run_id))
    assert reports == usage_of(events)  # all in the turn's run
    assert [r.get("model") for r in reports] == ["big", "big", None]  # the rest, at the end
    assert sum(r["input_tokens"] for r in reports) == 240  # 100 + 100 + 40, as the SDK counts
    assert sum(r["output_tokens"] for r in reports) == 24


def test_openai_agents_cancel_stops_the_run_before_its_next_tool(site):
    from agents import Agent, function_tool

    from sessions_app.agents.adapters.openai_agents import handler

    seen = {"launched": 0, "paused": False, "model_stopped": False}

    async def the_user_presses_stop():
        seen["paused"] = True  # the text item, its end included, is streamed
        try:
            await asyncio.sleep(60)  # longer than the test waits: only a cancel ends it
        except asyncio.CancelledError:
            seen["model_stopped"] = True
            raise

    @function_tool
    def launch() -> str:
        """Launch."""
        seen["launched"] += 1
        return "launched"

    model = scripted_agents_model([
        [("text", ["Counting down "]), the_user_presses_stop, ("call", "launch", "l1", ["{}"])],
    ])  # fmt: skip
    assistant = Agent(name="assistant", tools=[launch], model=model)
    session = new_session(site)

    async def device(client, run):
        # Not ``run.message_id``: it is set only between the text's first delta and its item's
        # end, which the adapter handles in one go; a device polling every 10 ms missed that
        # window now and then (twice in CI) and waited forever.
        await cancel_when(client, run, lambda: seen["paused"])

    run_id = asyncio.run(
        answer(site, session, handler(assistant, run_config=untraced()), "Go", during=device)
    )
    events = history(site, session)
    assert seen == {"launched": 0, "paused": True, "model_stopped": True}
    assert text_of(of_run(events, run_id)) == "Counting down "
    assert outcome(events, run_id) == ("RUN_FINISHED", "cancelled")


def test_openai_agents_take_a_steer_at_the_next_model_call(site):
    from agents import Agent, function_tool

    from sessions_app.agents.adapters.openai_agents import handler

    steered = asyncio.Event()

    @function_tool
    async def look() -> str:
        """Look around."""
        await asyncio.wait_for(steered.wait(), 10)  # the steer arrives while the tool runs
        return "looked"

    model = scripted_agents_model([[("call", "look", "k1", ["{}"])], [("text", ["Bonjour."])]])
    assistant = Agent(name="assistant", tools=[look], model=model)
    session = new_session(site)
    session_events = []

    async def device(client, run):
        live = client.sessions[session]
        listener = asyncio.create_task(collect(live, session_events))
        await until(lambda: tool_calls(session_events))
        await live.steer(run.id, "answer in French")
        await until(lambda: any(e["type"] == "STEER" for e in session_events))
        steered.set()
        listener.cancel()

    run_id = asyncio.run(
        answer(site, session, handler(assistant, run_config=untraced()), "Hi", during=device)
    )
    first, second = model.inputs
    assert {"role": "user", "content": "answer in French"} not in first
    assert second[-1] == {"role": "user", "content": "answer in French"}
    assert text_of(of_run(history(site, session), run_id)) == "Bonjour."


# --- any OpenAI-compatible endpoint --------------------------------------------------------


class Completions(BaseHTTPRequestHandler):
    """A Chat Completions endpoint streaming scripted chunks (reasoning, text, a tool call)."""

    seen: list = []
    deltas = [
        {"reasoning_content": "Greet "}, {"reasoning_content": "back."},
        {"content": "Hello "}, {"content": "there."},
        {"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "wave", "arguments": '{"hand":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ' "left"}'}}]},
    ]  # fmt: skip

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Completions.seen.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for delta in self.deltas:
            chunk = {"choices": [{"index": 0, "delta": delta}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if body.get("stream_options", {}).get("include_usage"):  # the usage chunk comes last
            usage = {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}}
            self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


def test_an_openai_compatible_endpoint_streams_reasoning_text_and_tool_calls(site):
    from sessions_app.agents.adapters.openai_compat import LLMSettings, handler

    server = ThreadingHTTPServer(("127.0.0.1", 0), Completions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    settings = LLMSettings(url, "tiny", input_price=1.0, output_price=2.0, currency="EUR")
    session = new_session(site)
    earlier = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hi!"}]
    try:
        run_id = asyncio.run(answer(site, session, handler(settings), "Wave", earlier=earlier))
    finally:
        server.shutdown()
    mine = of_run(history(site, session), run_id)
    assert Completions.seen[-1]["messages"] == [*earlier, {"role": "user", "content": "Wave"}]
    assert text_of(mine) == "Hello there."
    reasoning = [e["data"]["delta"] for e in mine if e["type"] == "REASONING_MESSAGE_CONTENT"]
    assert "".join(reasoning) == "Greet back."
    assert tool_calls(mine) == {"t1": {"name": "wave", "args": '{"hand": "left"}', "ended": True}}
    assert outcome(history(site, session), run_id) == ("RUN_FINISHED", "success")
    (usage,) = [e["data"]["value"] for e in mine if e["type"] == "CUSTOM"]
    assert usage["model"] == "tiny" and (usage["input_tokens"], usage["output_tokens"]) == (12, 5)
    assert usage["cost"] == pytest.approx(22e-6) and usage["currency"] == "EUR"
    assert 0 <= usage["first_token_ms"] <= usage["latency_ms"]
