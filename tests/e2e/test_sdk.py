"""The Python agent SDK against a real server: coalescing, cancel, steer, reconnect, sub-agents."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from sessions_app.client import SessionsClient
from tests.e2e.servers import DaphneProcess, daphne_server, site_database, token_and_key
from tests.e2e.wsclient import WsClient

# Protocol clients against the doors: run once, on the production engines (second pass).
pytestmark = [pytest.mark.e2e, pytest.mark.real_engines]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with site_database(tmp_path_factory.mktemp("sdk"), "sdk") as env:
        token, key = token_and_key(env, "talk", user="agent")
        with daphne_server(env) as base:
            yield {"base": base, "env": env, "token": token, "key": key}


def history(site, session="talk"):
    reply = httpx.get(f"{site['base']}/api/sessions/{session}/events?limit=1000",
                      headers={"Authorization": f"Bearer {site['key']}"})  # fmt: skip
    reply.raise_for_status()
    return reply.json()["events"]


def snapshot(site, session="talk"):
    return httpx.get(f"{site['base']}/api/sessions/{session}/snapshot",
                     headers={"Authorization": f"Bearer {site['key']}"}).json()["state"]  # fmt: skip


def run_events(site, run_id, session="talk"):
    return [e for e in history(site, session) if e.get("run") == run_id]


def test_text_is_coalesced_into_few_appends_and_folds_to_the_full_text(site):
    async def agent():
        async with SessionsClient(site["base"], api_key=site["key"]) as client:
            session = await client.session("talk")
            async with session.run(agent="writer") as run:
                began = time.monotonic()
                for i in range(200):
                    await run.text(f"t{i} ")
                    await asyncio.sleep(0.001)
                streamed = time.monotonic() - began
            return run.id, streamed

    run_id, streamed = asyncio.run(agent())
    events = run_events(site, run_id)
    deltas = [e for e in events if e["type"] == "TEXT_MESSAGE_CONTENT"]
    # One append per coalescing window (30 ms by default) at most, however long a loaded
    # machine takes to produce the 200 tokens; and far fewer appends than tokens.
    windows = streamed / 0.03
    assert 1 <= len(deltas) <= windows + 2, f"{len(deltas)} appends in {streamed:.2f} s"
    assert len(deltas) < 100, f"{len(deltas)} appends for 200 tokens"
    assert "".join(e["data"]["delta"] for e in deltas) == "".join(f"t{i} " for i in range(200))
    assert [e["type"] for e in events][-2:] == ["TEXT_MESSAGE_END", "RUN_FINISHED"]
    runs = {r["id"]: r for r in snapshot(site)["runs"]}
    assert runs[run_id]["status"] == "finished"


def test_a_short_answer_reaches_a_device_as_the_runs_start_then_one_frame_with_the_rest(site):
    """The message's start waits for its first text, and the last text goes with the
    message's end and the run's end: a one-line answer is two appends, not four."""

    async def scenario():
        device = await WsClient.open(site["base"], site["token"])
        await device.subscribe("talk", after="now")
        async with SessionsClient(site["base"], api_key=site["key"]) as client:
            session = await client.session("talk")
            async with session.run(agent="writer") as run:
                await run.text("ok")
        frames = []
        while not frames or frames[-1][-1] != "RUN_FINISHED":
            frame = await device.recv()
            if frame["type"] == "events":
                frames.append([e["type"] for e in frame["events"] if e.get("run") == run.id])
        await device.close()
        return [kinds for kinds in frames if kinds]

    assert asyncio.run(scenario()) == [
        ["RUN_STARTED"],
        ["TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_FINISHED"],
    ]


def test_a_users_cancel_stops_the_agent_promptly_and_nothing_follows_the_ack(site):
    async def scenario():
        async with SessionsClient(site["base"], api_key=site["key"]) as client:
            session = await client.session("talk")
            device = await WsClient.open(site["base"], site["token"])
            async with session.run(agent="writer") as run:
                await run.text("Once upon a time")
                await run.flush()
                await device.send({"op": "cancel", "id": 1, "session": "talk", "run": run.id})
                sent = time.monotonic()
                await asyncio.wait_for(run.cancelled.wait(), 5)
                latency = time.monotonic() - sent
                for i in range(50):  # an agent that keeps going: text() stops it
                    await run.text(f" more {i}")
            await device.close()
            return run.id, latency

    run_id, latency = asyncio.run(scenario())
    assert latency < 2
    events = run_events(site, run_id)
    kinds = [e["type"] for e in events]
    ack = kinds.index("CONTROL_ACK")
    assert kinds[ack:] == ["CONTROL_ACK", "RUN_FINISHED"]
    assert events[-1]["data"]["outcome"] == "cancelled"
    message = next(m for m in snapshot(site)["messages"] if m["run"] == run_id)
    assert message["text"].startswith("Once upon a time") and message["status"] == "cancelled"


def test_steering_reaches_the_running_agent_in_order(site):
    async def scenario():
        async with SessionsClient(site["base"], api_key=site["key"]) as client:
            session = await client.session("talk")
            device = await WsClient.open(site["base"], site["token"])
            async with session.run(agent="writer") as run:
                for i, text in enumerate(["shorter", "in French", "politely"]):
                    await device.send(
                        {"op": "steer", "id": i, "session": "talk", "run": run.id, "text": text}
                    )
                got = []
                async for steer in run.steers():
                    got.append(steer)
                    if len(got) == 3:
                        break
            await device.close()
            return got

    assert asyncio.run(scenario()) == ["shorter", "in French", "politely"]


def test_sub_agents_publish_their_own_runs_under_the_parent(site):
    async def scenario():
        async with SessionsClient(site["base"], api_key=site["key"]) as client:
            session = await client.session("talk")
            async with session.run(agent="orchestrator") as boss:

                async def helper(name):
                    async with session.run(agent=name, parent=boss) as child:
                        await child.text(f"{name} reporting")
                        return child.id

                children = await asyncio.gather(helper("researcher"), helper("critic"))
            return boss.id, children

    boss, children = asyncio.run(scenario())
    runs = {r["id"]: r for r in snapshot(site)["runs"]}
    assert {runs[c]["parent"] for c in children} == {boss}
    assert {runs[c]["agent"] for c in children} == {"researcher", "critic"}


def test_the_client_reconnects_after_a_server_restart_and_every_append_lands_once(site):
    # A server of its own (restarted below) on the site's database and channel layer, as a
    # second worker of the site is; a session of its own keeps its events apart.
    reply = httpx.post(f"{site['base']}/api/sessions/", json={"name": "restart"},
                       headers={"Authorization": f"Bearer {site['key']}"})  # fmt: skip
    reply.raise_for_status()
    with DaphneProcess(site["env"]) as server:
        run_id, reconnects, text = asyncio.run(_write_through_a_restart(server, site["key"]))
    assert text == "".join(f"a{i} " for i in range(30)) + "".join(f"b{i} " for i in range(30))
    assert reconnects >= 1


async def _write_through_a_restart(server, key):
    async with SessionsClient(server.base, api_key=key, max_backoff=0.5) as client:
        session = await client.session("restart")
        async with session.run(agent="writer") as run:
            for i in range(30):
                await run.text(f"a{i} ")
                await run.flush()
            bounce = asyncio.ensure_future(asyncio.to_thread(_restart, server))
            for i in range(30):  # these race the restart: some are re-sent after reconnecting
                await run.text(f"b{i} ")
                await run.flush()
                await asyncio.sleep(0.02)
            await bounce
        reconnects = client.reconnects
    site = {"base": server.base, "key": key}
    text = "".join(
        e["data"]["delta"]
        for e in run_events(site, run.id, "restart")
        if e["type"] == "TEXT_MESSAGE_CONTENT"
    )
    return run.id, reconnects, text


def _restart(server):
    server.stop(kill=True)
    time.sleep(0.3)
    server.start()


def test_publishes_over_the_socket_frame_rate_wait_and_land_once(site):
    """The server refuses frames past MAX_FRAMES_PER_SECOND (50/s, bursts of 100) unread; the
    SDK sends each refused one again once the bucket refills, instead of failing the run."""

    async def agent():
        async with SessionsClient(site["base"], api_key=site["key"]) as client:
            session = await client.session("talk")
            for i in range(180):
                await session.publish([{"type": "CUSTOM", "data": {"name": "n", "value": i}}])

    asyncio.run(agent())
    values = [e["data"]["value"] for e in history(site) if e["type"] == "CUSTOM"
              and e["data"].get("name") == "n"]  # fmt: skip
    assert values[-180:] == list(range(180))  # all of them, once, in order
