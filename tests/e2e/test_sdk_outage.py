"""The agent SDK at the edges, against real servers: a long outage, refusals, frames asked
for while reconnecting, a subscription over the limit."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest

from sessions_app.client import PublishError, SessionsClient
from sessions_app.tcp_proxy import TcpProxy
from tests.e2e.servers import DaphneProcess, database_copy, manage_output, site_database

pytestmark = [pytest.mark.e2e, pytest.mark.real_engines]

SERVER_EVENT_LIMIT = 64 * 1024  # MAX_EVENT_BYTES's default
SEED = """
from django.contrib.auth import get_user_model
from sessions_app.keys import create_key
from sessions_app.models import Session
user, _ = get_user_model().objects.get_or_create(username="agent")
for name in ("talk", "s1", "s2", "s3", "s4"):
    Session.objects.get_or_create(name=name, defaults={"owner": user})
print(create_key(user, "e2e agent", all_sessions=True)[1])
"""


def history(base, key, session="talk"):
    events, after = [], "-1"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
        while True:
            reply = http.get(
                f"/api/sessions/{session}/events", params={"after": after, "limit": 1000}
            )
            reply.raise_for_status()
            page = reply.json()
            events += page["events"]
            if page["up_to_date"] or not page["events"]:
                return events
            after = page["next_offset"]


def state(base, key, session="talk"):
    reply = httpx.get(f"{base}/api/sessions/{session}/snapshot",
                      headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    reply.raise_for_status()
    return reply.json()["state"]


def run_of(base, key, run_id, session="talk"):
    return next(r for r in state(base, key, session)["runs"] if r["id"] == run_id)


def message_of(base, key, run_id, session="talk"):
    return next(m for m in state(base, key, session)["messages"] if m["run"] == run_id)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A migrated database with the user "agent", its sessions and an API key of it, which each
    test's site copies (one Django process for the module instead of two a test)."""
    with site_database(tmp_path_factory.mktemp("sdkseed"), "sdkseed") as env:
        key = manage_output("shell", "-c", SEED, env=env).strip().splitlines()[-1]
        yield env, key


@pytest.fixture
def site(seeded, tmp_path):
    """``site(label, **SESSIONS_APP)``: a server of its own on a database of its own (a copy of
    ``seeded``); returns it, the API key, its env."""
    env, key = seeded
    with contextlib.ExitStack() as stack:

        def start(label, **settings):
            copy = stack.enter_context(database_copy(env, tmp_path, label))
            copy["SESSIONS_APP_JSON"] = json.dumps(settings)
            server = stack.enter_context(DaphneProcess(copy))
            return server, key, copy

        yield start


# --- 1. a long outage: nothing of the text is lost, nothing lands twice --------------------


def test_text_written_through_a_long_outage_lands_in_full_exactly_once(site):
    server, key, _ = site("sdkoutage")
    sent, run_id, reconnects = asyncio.run(_stream_through_an_outage(server, key))
    text = "".join(sent)
    assert reconnects >= 1
    events = [e for e in history(server.base, key) if e.get("run") == run_id]
    deltas = [e["data"]["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT"]
    assert "".join(deltas) == text  # in order, nothing missing, nothing repeated
    sizes = [len(json.dumps(e, ensure_ascii=False).encode()) for e in events]
    assert max(sizes) < SERVER_EVENT_LIMIT / 2
    message = message_of(server.base, key, run_id)
    assert message["text"] == text and message["status"] == "complete"
    assert run_of(server.base, key, run_id)["status"] == "finished"


async def _stream_through_an_outage(server, key):
    loop = asyncio.get_running_loop()
    sent: list[str] = []

    async def write(until):
        i = len(sent)
        while not until():
            token = f"[{i}] héllo wörld, 你好 😀 " * 4  # multibyte: splits must not cut them
            await run.text(token)
            sent.append(token)
            i += 1
            await asyncio.sleep(0.002)

    async with SessionsClient(server.base, api_key=key, max_backoff=0.5) as client:
        session = await client.session("talk")
        async with session.run(agent="writer") as run:
            started = loop.time()
            await write(lambda: loop.time() - started > 0.5)
            await asyncio.to_thread(server.stop, kill=True)
            # Down until far more than one event's worth of text piled up (and at least 2 s).
            mark, down = len(sent), loop.time()
            await write(
                lambda: (
                    loop.time() - down > 2
                    and sum(len(t.encode()) for t in sent[mark:]) > 3 * SERVER_EVENT_LIMIT
                )
            )
            restart = asyncio.ensure_future(asyncio.to_thread(server.start))
            await write(restart.done)
            await restart
            back = loop.time()
            await write(lambda: loop.time() - back > 1)
        return sent, run.id, client.reconnects


# --- 1. a publish that cannot land is raised, and the run ends with RUN_ERROR ---------------


def test_a_refused_publish_is_raised_to_the_agent_and_the_run_ends_with_run_error(site):
    # The server takes events of 4 KiB at most; the SDK was told 16 KiB (its default).
    server, key, _ = site("sdkrefused", MAX_EVENT_BYTES=4096)

    async def agent():
        async with SessionsClient(server.base, api_key=key) as client:
            session = await client.session("talk")
            run = session.run(agent="writer")
            with pytest.raises(PublishError) as raised:
                async with run:
                    await run.text("short and fine. ")
                    await run.flush()
                    await run.text("x" * 6000)  # its flush, in the background, is refused
                    await asyncio.sleep(0.5)
                    await run.text("more")  # raises what the background flush was told
                    pytest.fail("text() went on after a refused publish")
            # The session can still write: the refused sequence number was not used up.
            async with session.run(agent="writer") as after:
                await after.text("still here")
            return run, raised.value, after.id

    run, error, after = asyncio.run(agent())
    assert error.code == "limit_exceeded" and run.error is error
    failed = run_of(server.base, key, run.id)
    assert failed["status"] == "failed", failed  # ended by the SDK, not left to the watchdog
    assert "limit_exceeded" in str(failed["error"])
    kinds = [e["type"] for e in history(server.base, key) if e.get("run") == run.id]
    assert kinds[-1] == "RUN_ERROR"
    assert message_of(server.base, key, after)["text"] == "still here"


# --- 2. frames asked for while reconnecting land once ---------------------------------------


def test_frames_asked_for_while_reconnecting_land_once(site):
    server, key, _ = site("sdkresend")
    proxy = TcpProxy(server.port).start()
    try:
        run_id, replies = asyncio.run(_ask_while_reconnecting(proxy, server, key))
    finally:
        proxy.stop()
    assert all(r["type"] == "ack" for r in replies), replies
    events = history(server.base, key)
    user_texts = [e["data"]["delta"] for e in events
                  if e["type"] == "TEXT_MESSAGE_CONTENT" and e["message"].startswith("u-")]  # fmt: skip
    assert sorted(user_texts) == ["a question", "instead, this"]
    assert [e["data"]["text"] for e in events if e["type"] == "STEER"] == ["shorter"]
    cancels = [e for e in events if e["type"] == "CANCEL"]
    assert len(cancels) == 2  # the cancel, and the interrupt's
    assert replies[0]["message"] == next(
        m["id"] for m in state(server.base, key)["messages"] if m["text"] == "a question"
    )


async def _ask_while_reconnecting(proxy, server, key):
    async with SessionsClient(proxy.url, api_key=key, max_backoff=0.3) as agent:
        session = await agent.session("talk")
        async with SessionsClient(proxy.url, api_key=key, max_backoff=0.3) as phone:
            device = await phone.session("talk")
            async with session.run(agent="writer") as run:
                await run.text("working")
                await run.flush()
                await asyncio.to_thread(proxy.cut, 1.0)  # both clients lose their socket
                await asyncio.sleep(0.1)
                asks = [
                    device.send_message("a question"),
                    device.steer(run.id, "shorter"),
                    device.cancel(run.id),
                ]
                replies = await asyncio.wait_for(asyncio.gather(*asks), 20)
                assert phone.reconnects >= 1
                await asyncio.wait_for(run.cancelled.wait(), 10)
            replies.append(await device.interrupt("instead, this"))
    return run.id, replies


def test_a_cancel_racing_a_cut_connection_lands_once_and_its_caller_sees_an_ack(site):
    server, key, _ = site("sdkcutcancel")
    proxy = TcpProxy(server.port).start()
    try:
        outcomes = asyncio.run(_cancel_racing_cuts(proxy, key))
    finally:
        proxy.stop()
    events = history(server.base, key)
    for run_id, reply in outcomes:
        assert reply["type"] == "ack", reply
        assert sum(1 for e in events if e["type"] == "CANCEL" and e.get("run") == run_id) == 1


async def _cancel_racing_cuts(proxy, key):
    outcomes = []
    async with SessionsClient(proxy.url, api_key=key, max_backoff=0.2) as agent:
        session = await agent.session("talk")
        async with SessionsClient(proxy.url, api_key=key, max_backoff=0.2) as phone:
            device = await phone.session("talk")
            for trial in range(6):
                async with session.run(agent="writer") as run:
                    await run.text("working")
                    await run.flush()
                    cancel = asyncio.ensure_future(device.cancel(run.id))
                    await asyncio.sleep(0.004 * trial)  # before, while and after it lands
                    await asyncio.to_thread(proxy.cut, 0.3)
                    outcomes.append((run.id, await asyncio.wait_for(cancel, 20)))
                    await asyncio.wait_for(run.cancelled.wait(), 10)
    return outcomes


# --- 3. a subscription the server refuses raises -------------------------------------------


def test_a_refused_subscription_raises_instead_of_hanging(site):
    server, key, _ = site("sdklimit", MAX_SUBSCRIPTIONS_PER_CONNECTION=3)  # s1-s4 are there

    async def agent():
        async with SessionsClient(server.base, api_key=key) as client:
            with pytest.raises(PublishError) as unknown:
                await asyncio.wait_for(client.session("no-such-session"), 10)
            for name in ("s1", "s2", "s3"):
                await client.session(name)
            with pytest.raises(PublishError) as over:
                await asyncio.wait_for(client.session("s4"), 10)
            session = await client.session("s1")  # the others still work
            reply = await session.send_message("hello")
            return unknown.value, over.value, reply

    unknown, over, reply = asyncio.run(agent())
    assert unknown.code == "not_found"
    assert over.code == "limit_exceeded" and over.frame["limit"] == "subscriptions"
    assert reply["type"] == "ack"
