"""The gateway against real upstream agent servers and a live site: a pydantic-ai AG-UI app
and an OpenAI-compatible server (uvicorn, in a thread), and an AI SDK server built with the
`ai` npm package (node). Each answers a turn through a real SDK run; a user's cancel aborts
the upstream request (the upstream sees it) and ends the run cancelled; a steer restarts the
upstream call; a broken upstream ends the run with a RUN_ERROR naming the cause.

One site and one server per upstream for the module; each test has its own session.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from sessions_app.agents import gateway
from sessions_app.agents.base import Turn
from sessions_app.client import SessionsClient
from sessions_app.domain.upstream import UpstreamError
from tests.e2e import screen
from tests.e2e.node import ensure_node_modules
from tests.e2e.screen import text_of, tool_calls
from tests.e2e.servers import (
    ROOT,
    daphne_server,
    free_port,
    manage_output,
    site_database,
    wait_until_serving,
)

# The gateway is a client of the doors; the engines behind them are not its subject.
pytestmark = [pytest.mark.e2e, pytest.mark.engine_independent]
names = itertools.count()
NODE = Path(__file__).parent / "agui"


SETUP = """
from django.contrib.auth import get_user_model
from sessions_app.access import mint_token
from sessions_app.keys import create_key
from sessions_app.models import Session
agent, _ = get_user_model().objects.get_or_create(username="agent")
print(create_key(agent, "e2e agent", all_sessions=True)[1])
alice, _ = get_user_model().objects.get_or_create(username="alice")
robot, _ = get_user_model().objects.get_or_create(username="robot")
for i in range(2):
    Session.objects.get_or_create(name=f"chat-{i}", defaults={"owner": alice})
print(mint_token(alice))
print(create_key(robot, "gateway workers", agents="assistant")[1])
print(create_key(alice, "alice's own", all_sessions=True)[1])
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, python_upstream):
    """The demo site; every user message asks agent "assistant", which the site's
    AGENT_GATEWAYS puts in front of the pydantic-ai AG-UI app (for ``run_agents``)."""
    settings = {
        "TURNS": {"agent": "assistant"},
        "AGENT_GATEWAYS": {"assistant": {"protocol": "agui",
                                         "url": python_upstream["base"] + "/agui"}},
    }  # fmt: skip
    with site_database(tmp_path_factory.mktemp("gateway"), "gateway") as env:
        env = {**env, "SESSIONS_APP_JSON": json.dumps(settings)}
        key, token, worker, own = manage_output("shell", "-c", SETUP, env=env).split()[-4:]
        with daphne_server(env) as base:
            # A worker as an operator starts it (no module of ours: the setting alone), started
            # now so that it boots while the tests before its own run.
            args = [sys.executable, "manage.py", "run_agents", "--url", base, "--api-key", worker,
                    "--concurrency", "2", "--drain", "2"]  # fmt: skip
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)  # fmt: skip
            try:
                yield {"base": base, "key": key, "token": token, "own": own, "worker": proc}
            finally:
                proc.terminate()
                proc.communicate(timeout=30)


def new_session(site) -> str:
    return screen.new_session(site, f"gateway-{next(names)}")


def history(site, session):
    return screen.history(site, session)


def of_run(events, run_id):
    return [e for e in events if e.get("run") == run_id]


def outcome(events):
    ends = [e for e in events if e["type"] in ("RUN_FINISHED", "RUN_ERROR")]
    assert len(ends) == 1, ends
    return ends[0]["type"], ends[0].get("data", {})


EARLIER = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]


async def answer(site, session, upstream, text, *, during=None, input=None):
    """What a worker does: open a run, call the gateway's handler in it; ``during(client,
    run)`` runs beside it (a user's device). Returns the run's id."""
    handler = gateway.handler(upstream)
    async with SessionsClient(site["base"], api_key=site["key"]) as client:
        live = await client.session(session)
        async with live.run(agent="assistant") as run:
            turn = Turn(id=1, session=session, message="u-3", text=text, agent="assistant",
                        attempt=1, run_id=run.id, messages=[*EARLIER, {"role": "user",
                        "content": text}], input=input or {})  # fmt: skip
            work = handler(turn, run)
            if during is None:
                await asyncio.wait_for(work, 30)
            else:
                await asyncio.wait_for(asyncio.gather(work, during(client, run)), 30)
        return run.id


def run_turn(site, upstream, text, **kwargs):
    session = new_session(site)
    run_id = asyncio.run(answer(site, session, upstream, text, **kwargs))
    return of_run(history(site, session), run_id)


def failed_turn(site, upstream, text="hello"):
    """A turn through a broken upstream: the handler's error, and the run as the log has it."""
    session = new_session(site)
    with pytest.raises(UpstreamError) as failed:
        asyncio.run(answer(site, session, upstream, text))
    [run_id] = {e["run"] for e in history(site, session) if e.get("run")}
    return str(failed.value), of_run(history(site, session), run_id)


async def until(predicate, seconds=15):
    for _ in range(int(seconds * 100)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the condition never held")


def device_after_text(site, action):
    """A user's device: once some of the run's text is on the log, ``action(session, run)``."""

    async def during(client, run):
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {site['key']}"}) as http:
            url = f"{site['base']}/api/sessions/{run.session.name}/events?limit=1000"
            for _ in range(1500):
                events = (await http.get(url)).json()["events"]
                if text_of(of_run(events, run.id)):
                    break
                await asyncio.sleep(0.02)
        await action(client.sessions[run.session.name], run)

    return during


async def stop(session, run):
    await session.cancel(run.id)


def until_sync(predicate, seconds=10):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


# --- Python upstreams: pydantic-ai's AG-UI app and an OpenAI-compatible server --------------


@contextmanager
def uvicorn_thread(app):
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                            lifespan="off", timeout_graceful_shutdown=1)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until_sync(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


def last_prompt(messages) -> str:
    from pydantic_ai.messages import ModelRequest, UserPromptPart

    prompts = [p.content for m in messages if isinstance(m, ModelRequest)
               for p in m.parts if isinstance(p, UserPromptPart)]  # fmt: skip
    return str(prompts[-1]) if prompts else ""


def python_upstreams(seen):
    """One Starlette app: the pydantic-ai AG-UI agent at /agui, a Chat Completions server at
    /v1/chat/completions and broken endpoints. ``seen`` records the request bodies and the
    streams that were stopped before their end (their client went away)."""
    from pydantic_ai import Agent
    from pydantic_ai.messages import ToolReturnPart
    from pydantic_ai.models.function import DeltaToolCall, FunctionModel
    from pydantic_ai.ui.ag_ui import AGUIAdapter
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def slow(prompt):
        done = False
        try:
            for _ in range(200):
                yield "word "
                await asyncio.sleep(0.05)
            done = True
        finally:
            if not done:
                seen["aborted"].append(prompt)

    async def model(messages, info):
        prompt = last_prompt(messages)
        seen["tools"].append(sorted(t.name for t in info.function_tools))
        if "fail" in prompt:
            raise RuntimeError("the model is down")
        if "slow" in prompt:
            async for word in slow(prompt):
                yield word
        elif "tool" in prompt:
            if not any(isinstance(p, ToolReturnPart) for m in messages for p in m.parts):
                yield {0: DeltaToolCall(name="weather", json_args='{"city": "Paris"}',
                                        tool_call_id="call-w")}  # fmt: skip
            else:
                yield "Clear skies in Paris."
        elif "medium" in prompt:
            for _ in range(20):
                yield "word "
                await asyncio.sleep(0.05)
        elif "shorter" in prompt:
            yield "Short answer."
        else:
            yield f"You said: {prompt}"

    agent = Agent(FunctionModel(stream_function=model))

    @agent.tool_plain
    def weather(city: str) -> str:
        return f"sunny in {city}"

    async def agui(request):
        seen["agui"].append(json.loads(await request.body()))
        return await AGUIAdapter.dispatch_request(request, agent=agent)

    async def chat(request):
        body = json.loads(await request.body())
        seen["openai"].append(body)
        prompt = body["messages"][-1]["content"]

        async def chunks():
            if "big" in prompt:  # one chunk over the log's event size limit, twice
                call = {"index": 0, "id": "c-big", "function": {"name": "store", "arguments": BIG}}
                delta = {"reasoning_content": "why " * 20_000, "tool_calls": [call]}
                yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta}]})}\n\n"
            words = slow(prompt) if "slow" in prompt else iter_async(["You ", "said: ", prompt])
            async for word in words:
                chunk = {"choices": [{"index": 0, "delta": {"content": word}}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def stall(request):
        async def chunks():
            yield 'data: {"type": "RUN_STARTED", "threadId": "t", "runId": "r"}\n\n'
            await asyncio.sleep(30)

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return Starlette(routes=[
        Route("/agui", agui, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/broken/500", lambda r: JSONResponse({"detail": "overloaded"}, 500),
              methods=["POST"]),
        Route("/broken/html", lambda r: HTMLResponse("<h1>login</h1>"), methods=["POST"]),
        Route("/broken/not-json", lambda r: StreamingResponse(iter_async(["data: <h1>oops</h1>\n\n"]),
              media_type="text/event-stream"), methods=["POST"]),
        Route("/broken/stall", stall, methods=["POST"]),
    ])  # fmt: skip


async def iter_async(items):
    for item in items:
        yield item


@pytest.fixture(scope="module")
def python_upstream():
    seen = {"agui": [], "openai": [], "aborted": [], "tools": []}
    with uvicorn_thread(python_upstreams(seen)) as base:
        yield {"base": base, "seen": seen}


def agui(python_upstream, path="/agui", timeout=10.0):
    return gateway.from_setting("assistant", {"protocol": "agui", "url": python_upstream["base"] + path,
                                              "timeout": timeout})  # fmt: skip


# --- AG-UI (pydantic-ai) -----------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:State was provided")  # the agent has no state to take it
def test_agui_answer_with_a_tool_call_and_what_the_client_sent_forwarded(site, python_upstream):
    client_input = {
        "tools": [{"name": "confirm", "description": "Ask the user to confirm",
                   "parameters": {"type": "object", "properties": {}}}],
        "context": [{"description": "timezone", "value": "Europe/Paris"}],
        "state": {"city": "Paris"},
        "forwardedProps": {"theme": "dark"},
    }  # fmt: skip
    events = run_turn(site, agui(python_upstream), "weather tool please", input=client_input)
    assert text_of(events) == "Clear skies in Paris."
    assert tool_calls(events) == {"call-w": {"name": "weather", "args": '{"city": "Paris"}',
                                             "ended": True, "result": "sunny in Paris"}}  # fmt: skip
    assert outcome(events) == ("RUN_FINISHED", {"outcome": "success"})
    sent = python_upstream["seen"]["agui"][-1]
    assert sent["threadId"].startswith("gateway-") and sent["runId"] == events[0]["run"]
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("user", "Hello"),
        ("assistant", "Hi!"),
        ("user", "weather tool please"),
    ]
    assert {k: sent[k] for k in client_input} == client_input
    assert "confirm" in python_upstream["seen"]["tools"][-1]  # the agent was offered the tool


def test_agui_cancel_aborts_the_upstream_run_and_keeps_what_was_written(site, python_upstream):
    events = run_turn(
        site, agui(python_upstream), "slow story", during=device_after_text(site, stop)
    )
    assert outcome(events) == ("RUN_FINISHED", {"outcome": "cancelled"})
    # What was written before the cancel is kept: at least the word the device saw (one, when
    # the cancel lands within the next coalescing window, as in CI under load), never all 200.
    kept = text_of(events)
    assert kept.startswith("word ") and set(kept.split()) == {"word"}
    assert len(kept.split()) < 200
    until_sync(lambda: "slow story" in python_upstream["seen"]["aborted"])


def test_agui_steer_restarts_the_upstream_with_the_answer_so_far(site, python_upstream):
    async def steer(session, run):
        await session.steer(run.id, "shorter")

    calls = len(python_upstream["seen"]["agui"])
    events = run_turn(
        site, agui(python_upstream), "slow essay", during=device_after_text(site, steer)
    )
    assert outcome(events) == ("RUN_FINISHED", {"outcome": "success"})
    assert text_of(events).endswith("Short answer.")
    first, second = python_upstream["seen"]["agui"][calls:]
    assert second["runId"] == f"{first['runId']}-1"
    roles = [(m["role"], m["content"].strip().split(" ")[0]) for m in second["messages"]]
    assert roles[-3:] == [("user", "slow"), ("assistant", "word"), ("user", "shorter")]
    until_sync(lambda: "slow essay" in python_upstream["seen"]["aborted"])


@pytest.mark.parametrize(
    ("path", "text", "cause"),
    [
        ("/agui", "fail now", "the upstream agent failed: "),
        ("/broken/500", "hello", 'answered HTTP 500: \'{"detail":"overloaded"}\''),
        ("/broken/html", "hello", "Content-Type 'text/html; charset=utf-8', not text/event-stream"),
        ("/broken/not-json", "hello", "not JSON: '<h1>oops</h1>'"),
        ("/broken/stall", "hello", "nothing came for 0.5 s"),
    ],
)
def test_a_broken_upstream_ends_the_run_with_an_error_naming_the_cause(
    site, python_upstream, path, text, cause
):
    # Only the stalled upstream is meant to hit the timeout; the others get the usual one, so
    # that a slow first frame on a loaded machine is not taken for a stall.
    timeout = 0.5 if path == "/broken/stall" else 10.0
    message, events = failed_turn(site, agui(python_upstream, path, timeout=timeout), text)
    assert cause in message
    kind, data = outcome(events)
    assert kind == "RUN_ERROR" and cause in data["message"]
    assert data["message"].startswith("UpstreamError: upstream 'assistant' (http://")


def test_connection_refused_ends_the_run_with_an_error(site):
    upstream = gateway.from_setting("assistant", {"protocol": "agui",
                                                  "url": f"http://127.0.0.1:{free_port()}/"})  # fmt: skip
    message, events = failed_turn(site, upstream)
    assert "cannot connect" in message
    assert outcome(events)[0] == "RUN_ERROR"


# --- OpenAI-compatible Chat Completions ------------------------------------------------------


BIG = json.dumps({"rows": ["é" * 50 + str(i) for i in range(2_000)]})


def openai(python_upstream):
    return gateway.from_setting("assistant", {
        "protocol": "openai", "url": python_upstream["base"] + "/v1", "model": "tiny",
        "headers": {"Authorization": "Bearer sk-test"}})  # fmt: skip


def test_openai_answer_and_cancel(site, python_upstream):
    events = run_turn(site, openai(python_upstream), "hello there")
    assert text_of(events) == "You said: hello there"
    assert outcome(events) == ("RUN_FINISHED", {"outcome": "success"})
    sent = python_upstream["seen"]["openai"][-1]
    assert sent == {"model": "tiny", "stream": True, "messages": [*EARLIER,
                    {"role": "user", "content": "hello there"}]}  # fmt: skip

    events = run_turn(
        site, openai(python_upstream), "slow chat", during=device_after_text(site, stop)
    )
    assert outcome(events) == ("RUN_FINISHED", {"outcome": "cancelled"})
    until_sync(lambda: "slow chat" in python_upstream["seen"]["aborted"])


# --- the AI SDK UI message stream (the `ai` npm package) -----------------------------------


@pytest.fixture(scope="module")
def aisdk_upstream():
    ensure_node_modules(NODE, "the AI SDK upstream")
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="aisdk-upstream-", suffix=".log")[1])
    with log.open("ab") as out:
        proc = subprocess.Popen(["node", "gateway_upstream.mjs", str(port)], cwd=NODE,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base + "/log", proc, log)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        log.unlink(missing_ok=True)


def aisdk(base):
    return gateway.from_setting("assistant", {"protocol": "aisdk", "url": base + "/"})


def test_aisdk_answer_with_a_tool_call(site, aisdk_upstream):
    events = run_turn(site, aisdk(aisdk_upstream), "weather tool please")
    assert text_of(events) == "Clear skies in Paris."
    assert tool_calls(events) == {"call-1": {"name": "weather", "args": '{"city": "Paris"}',
                                             "ended": True,
                                             "result": '{"city": "Paris", "sky": "clear"}'}}  # fmt: skip
    assert outcome(events) == ("RUN_FINISHED", {"outcome": "success"})
    sent = httpx.get(aisdk_upstream + "/log").json()["requests"][-1]
    assert [(m["role"], m["parts"][0]["text"]) for m in sent] == [
        ("user", "Hello"),
        ("assistant", "Hi!"),
        ("user", "weather tool please"),
    ]


def test_aisdk_cancel_aborts_the_upstream_request(site, aisdk_upstream):
    events = run_turn(
        site, aisdk(aisdk_upstream), "slow poem", during=device_after_text(site, stop)
    )
    assert outcome(events) == ("RUN_FINISHED", {"outcome": "cancelled"})
    assert text_of(events).startswith("word ")
    until_sync(lambda: "slow poem" in httpx.get(aisdk_upstream + "/log").json()["aborted"])


def test_openai_deltas_over_the_event_size_limit_are_cut_not_refused(site, python_upstream):
    events = run_turn(site, openai(python_upstream), "big one")
    assert outcome(events) == ("RUN_FINISHED", {"outcome": "success"})
    assert tool_calls(events)["c-big"]["args"] == BIG
    reasoning = [e["data"]["delta"] for e in events if e["type"] == "REASONING_MESSAGE_CONTENT"]
    assert len(reasoning) > 1 and "".join(reasoning) == "why " * 20_000
    assert text_of(events) == "You said: big one"


# --- the whole path: run_agents serves the gateway of the site's setting --------------------


def test_run_agents_answers_through_the_gateway_a_user_who_left(site, python_upstream):
    """The one-setting migration: the site names the upstream in AGENT_GATEWAYS; the worker
    started with ``run_agents`` (no module of ours) answers a user's message through it. The
    user's device goes away after sending; the answer is written all the same, a second device
    sees all of it, and a cancel from a device aborts the upstream request."""
    own = {"Authorization": f"Bearer {site['own']}"}

    def log(name):
        reply = httpx.get(f"{site['base']}/api/sessions/{name}/events?limit=1000", headers=own)
        return reply.json()["events"]

    def turn_run(name):
        started = [
            e for e in log(name) if e["type"] == "RUN_STARTED" and e.get("data", {}).get("turn")
        ]
        return started[0]["run"] if started else None

    def ended(name):
        run = turn_run(name)
        return run is not None and any(
            e["type"] in ("RUN_FINISHED", "RUN_ERROR") for e in of_run(log(name), run)
        )

    async def send(name, text):
        async with SessionsClient(site["base"], token=site["token"]) as device:
            await (await device.session(name)).send_message(text)
        # the device is gone: nothing holds the upstream request but the worker

    async def scenario():
        await send("chat-0", "medium story")
        await until(lambda: ended("chat-0"), 30)
        async with SessionsClient(site["base"], token=site["token"]) as device:
            await (await device.session("chat-1")).send_message("slow saga")
            await until(lambda: text_of(of_run(log("chat-1"), turn_run("chat-1") or "-")), 30)
            await device.sessions["chat-1"].cancel(turn_run("chat-1"))
            await until(lambda: ended("chat-1"), 30)

    asyncio.run(scenario())
    assert site["worker"].poll() is None  # it served both turns and still runs
    run = turn_run("chat-0")
    assert outcome(of_run(log("chat-0"), run)) == ("RUN_FINISHED", {"outcome": "success"})
    sent = next(b for b in python_upstream["seen"]["agui"] if b["threadId"] == "chat-0")
    assert sent["runId"] == run and sent["messages"][-1]["content"] == "medium story"
    second_device = httpx.get(f"{site['base']}/api/sessions/chat-0/snapshot", headers=own)
    [answer] = [m for m in second_device.json()["state"]["messages"] if m["run"] == run]
    assert answer["text"] == "word " * 20
    cancelled = of_run(log("chat-1"), turn_run("chat-1"))
    assert outcome(cancelled) == ("RUN_FINISHED", {"outcome": "cancelled"})
    until_sync(lambda: "slow saga" in python_upstream["seen"]["aborted"])
