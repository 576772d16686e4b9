"""Chaos: workers killed with SIGKILL, Redis and PostgreSQL restarted, agents killed, stalled
sockets. Nothing acknowledged is lost, nothing is delivered twice, nothing stays running.

Set-up (module scope): a throwaway PostgreSQL cluster and Redis server of this test's own on free
loopback ports (the machine's shared ones are never touched), two daphne workers of the demo
site on them, and a TCP proxy owned by the test in front of the workers that spreads
connections over them. Agents publish through the Python SDK; subscribers follow through the
proxy and resume from their last offset. ``bench/chaos.py`` runs the same scenarios longer.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import textwrap
import time

import httpx
import pytest
import websockets

from sessions_app.domain.offsets import parse_offset
from tests.e2e.chaos.clients import Agent, Subscriber, check_exactly_once, wait_until
from tests.e2e.chaos.cluster import Cluster
from tests.e2e.servers import ROOT
from tests.e2e.wsclient import RawSocket, WsClient

# The cluster's PostgreSQL and Redis are its own (never this pass's engines): the same test in
# either pass, so it runs once, in the first pass, the shorter one.
pytestmark = [pytest.mark.e2e, pytest.mark.own_engines]

# Each cycle kills one of the two workers (alternately) and restarts it: 8 cycles kill each
# worker four times, mid-stream, with subscribers and the agent on both. `python -m bench chaos`
# runs 100 cycles; CHAOS_CYCLES=20 here for a longer look.
CYCLES = int(os.environ.get("CHAOS_CYCLES", "8"))
SESSIONS = ["kill", "redis", "pg", "lost", "slow", "warm-up"]
HEARTBEAT_TIMEOUT = 3  # tests/e2e/chaos/settings.py
CLOSE_SLOW_CONSUMER = 4008
SLOW_CONSUMER_TIMEOUT = 1.0  # tests/e2e/chaos/settings.py


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster()
    try:
        yield cluster.start(SESSIONS)
    finally:
        cluster.stop()


async def _finish(subscribers, agent, cluster, session):
    await agent.stop()
    assert not agent.failures, f"the SDK gave up: {agent.failures}"
    log = cluster.history(session)
    check_exactly_once(log, agent.acked, "the log")
    for sub in subscribers:
        assert await wait_until(lambda s=sub: len(s.events) >= len(log), 20), (
            f"a subscriber has {len(sub.events)} of {len(log)} entries"
        )
    await asyncio.sleep(0.5)  # anything beyond the log would be a duplicate
    for i, sub in enumerate(subscribers):
        check_exactly_once(sub.events, agent.acked, f"subscriber {i}")
        assert len(sub.events) == len(log)
        await sub.stop()
    return log


@pytest.mark.timeout(360)  # a restart is 1-4 s of daphne start-up (far more on a busy machine)
def test_kill_9_a_worker_mid_stream_repeatedly_loses_and_repeats_nothing(cluster):
    async def scenario():
        subscribers = [Subscriber(cluster.url, cluster.token, "kill").start() for _ in range(4)]
        agent = await Agent(cluster.url, cluster.key, "kill").start()
        for cycle in range(CYCLES):
            await asyncio.to_thread(cluster.kill_and_restart, cycle % 2)
            await asyncio.sleep(0.1)
        log = await _finish(subscribers, agent, cluster, "kill")
        return log, sum(s.reconnects for s in subscribers), agent.client.reconnects

    log, resubscribed, agent_reconnects = asyncio.run(scenario())
    assert len(log) >= CYCLES * 5, "the agent hardly published: the test proved little"
    assert resubscribed >= CYCLES, "subscribers were not cut by the kills"
    assert agent_reconnects >= 1


# How fast it comes back is `bench chaos`'s figure (at most 0.99 s over 5 restarts, bench/README.md);
# here the bound only catches a delivery that never comes back: at CI's load the 2 s this test
# once asserted was a speed check, and failed with nothing wrong.
RECOVERY_BOUND = 30.0


def test_redis_restart_mid_stream_live_delivery_comes_back_by_itself(cluster):
    async def scenario():
        subscribers = [Subscriber(cluster.url, cluster.token, "redis").start() for _ in range(3)]
        agent = await Agent(cluster.url, cluster.key, "redis").start()
        await wait_until(lambda: len(agent.acked) > 20, 10)
        await asyncio.to_thread(cluster.redis.restart)
        back, mark = time.monotonic(), len(agent.acked)

        def live_again():
            if len(agent.acked) <= mark:
                return False
            probe = agent.acked[mark]  # acknowledged after Redis came back
            return all(probe in s.values() for s in subscribers)

        recovered = await wait_until(live_again, RECOVERY_BOUND, step=0.01)
        took = time.monotonic() - back
        await _finish(subscribers, agent, cluster, "redis")
        return recovered, took

    recovered, took = asyncio.run(scenario())
    assert recovered, f"live delivery had not come back {took:.1f}s after Redis restarted"


AGENT_SCRIPT = """
import asyncio, sys
from sessions_app.client import SessionsClient

async def main(base, key):
    async with SessionsClient(base, api_key=key) as client:
        session = await client.session("lost")
        async with session.run(agent="doomed", run_id="run-lost") as run:
            await run.text("partial answer")
            await run.flush()
            print("ready", flush=True)
            await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _runs(cluster, session):
    reply = httpx.get(f"{cluster.url}/api/sessions/{session}/runs",
                      headers={"Authorization": f"Bearer {cluster.key}"}, timeout=10)  # fmt: skip
    return {r["run_id"]: r for r in reply.json()["items"]}


def test_a_killed_agent_s_run_fails_with_agent_lost_on_every_device(cluster):
    agent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(AGENT_SCRIPT), cluster.url, cluster.key],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    async def scenario():
        # One device on each worker, directly.
        devices = [
            Subscriber(f"http://127.0.0.1:{w.port}", cluster.token, "lost").start()
            for w in cluster.workers
        ]
        assert agent.stdout is not None
        ready = await asyncio.wait_for(asyncio.to_thread(agent.stdout.readline), 30)
        assert ready.strip() == b"ready"
        from sessions_app.client import SessionsClient

        # A living agent that only waits (say, on a slow model) says so every second.
        async with SessionsClient(cluster.url, api_key=cluster.key, heartbeat_seconds=1) as alive:
            session = await alive.session("lost")
            async with session.run(agent="idle", run_id="run-alive"):
                agent.kill()  # SIGKILL: no goodbye, no RUN_ERROR from the agent
                killed = time.monotonic()

                def lost_everywhere():
                    return all(
                        any(e["type"] == "RUN_ERROR" and e.get("run") == "run-lost"
                            for e in d.events)
                        for d in devices
                    )  # fmt: skip

                seen = await wait_until(lambda: lost_everywhere(), HEARTBEAT_TIMEOUT + 10)
                took = time.monotonic() - killed
                await asyncio.sleep(max(0.0, HEARTBEAT_TIMEOUT * 1.5 - took))
                runs = _runs(cluster, "lost")  # the idle but living agent is still running
        for device in devices:
            await device.stop()
        return devices, seen, took, runs

    try:
        devices, seen, took, runs = asyncio.run(scenario())
    finally:
        agent.kill()
        agent.wait()
    assert seen, "the killed agent's run never ended"
    assert took >= HEARTBEAT_TIMEOUT * 0.8, f"ended after {took:.1f}s, before the timeout"
    for device in devices:
        error = next(e for e in device.events if e["type"] == "RUN_ERROR")
        assert error["data"]["code"] == "agent_lost" and error["data"]["message"], error
    assert runs["run-lost"]["status"] == "failed"
    assert runs["run-alive"]["status"] == "running", "a living agent was declared lost"


def test_a_socket_that_stops_reading_is_cut_with_4008_and_resumes_from_its_offset(cluster):
    worker = cluster.workers[0]
    stalled = RawSocket(worker.port, cluster.token)
    assert json.loads(stalled.frame()[1])["type"] == "hello"
    stalled.send({"op": "subscribe", "id": "s", "session": "slow", "after": "now"})
    while json.loads(stalled.frame()[1]).get("type") != "caught_up":
        pass
    chunk, per_frame, frames = "x" * 30_000, 7, 110  # 110 publishes of 210 kB: 23 MB in all
    total = per_frame * frames * len(chunk)

    async def flood(session):
        publisher = await WsClient.open(worker.base, cluster.token)
        for i in range(frames):
            events = [{"type": "CUSTOM", "data": {"name": "bulk", "value": [i, j, chunk]}}
                      for j in range(per_frame)]  # fmt: skip
            ack = await publisher.publish(session, events)
            assert ack["type"] == "ack", ack
        await publisher.close()

    async def warm_up():
        # The same flood once to a subscriber that reads everything, so that what the
        # worker's heap keeps after any flood of this size (parsed frames, built events
        # frames) is not counted against the stalled socket.
        reader = await WsClient.open(worker.base, cluster.token)
        await reader.subscribe("warm-up", "now")
        await asyncio.gather(flood("warm-up"), reader.follow_until(per_frame * frames))
        await reader.close()

    asyncio.run(warm_up())
    rss_before = _rss(worker.proc.pid)
    asyncio.run(flood("slow"))
    rss_growth = _rss(worker.proc.pid) - rss_before
    time.sleep(SLOW_CONSUMER_TIMEOUT + 1)  # it has read nothing for longer than the patience
    # Read again: what the kernel and the server kept for us, then the end of the connection:
    # a close frame with 4008, or (a client that was not reading may only see this, see
    # docs/sessions/websocket.md) the connection dropped.
    events, close_code, dropped = [], None, False
    ends = time.monotonic() + 30
    try:
        while time.monotonic() < ends:
            opcode, payload = stalled.frame()
            if opcode == 0x8:
                close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                break
            frame = json.loads(payload)
            if frame["type"] == "events":
                events += frame["events"]
    except (ConnectionError, OSError):
        dropped = True
    stalled.sock.close()
    assert close_code == CLOSE_SLOW_CONSUMER or (close_code is None and dropped), (
        f"the stalled socket was not cut: close code {close_code}, dropped {dropped}"
    )
    assert "closing a slow consumer" in worker.log.read_text(), "cut, but not as a slow consumer"
    assert worker.proc.poll() is None, "the worker died"
    assert stalled.received < total / 2, "the server kept everything for a socket not reading"
    assert rss_growth < total / 2, f"the worker grew by {rss_growth} bytes for {total} published"

    async def resume():
        # As a client does: resubscribe from the last offset seen until caught up; a resume
        # that is itself cut (a large backlog) continues from where it got to.
        got, last, errors = [], events[-1]["offset"] if events else "-1", []
        for _ in range(10):
            again = await WsClient.open(worker.base, cluster.token)
            try:
                reply = await again.subscribe("slow", after=last)
            except websockets.ConnectionClosed:
                reply = None
            got += again.events
            last = again.last_offset if again.events else last
            await again.close()
            if reply is not None and reply["type"] == "error":
                errors.append(reply)
            elif reply is not None:
                return got, errors
        raise AssertionError(f"never caught up again; errors: {errors}")

    rest, errors = asyncio.run(resume())
    seqs = [parse_offset(e["offset"]) for e in events + rest]  # the session holds only the flood
    assert seqs == list(range(1, per_frame * frames + 1)), "a gap or a repeat after resuming"
    assert not errors, f"resuming was answered with errors: {errors}"


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# Last: a crash leaves the workers' database connections to be re-opened one failure each.
def test_postgres_crash_mid_stream_appends_fail_retryably_and_land_once(cluster):
    async def scenario():
        subscribers = [Subscriber(cluster.url, cluster.token, "pg").start() for _ in range(3)]
        agent = await Agent(cluster.url, cluster.key, "pg").start()
        await wait_until(lambda: len(agent.acked) > 20, 10)
        probe = await WsClient.open(cluster.url, cluster.token)
        # "immediate" is a crash: no checkpoint, the restart recovers from the WAL.
        await asyncio.to_thread(cluster.pg.stop, "immediate")
        event = {"type": "CUSTOM", "data": {"name": "probe", "value": -1}}
        refused = await probe.publish("pg", [event])
        await asyncio.sleep(1.5)
        await asyncio.to_thread(cluster.pg.start)
        mark = len(agent.acked)
        resumed = await wait_until(lambda: len(agent.acked) > mark + 10, 30)
        await probe.close()
        await _finish(subscribers, agent, cluster, "pg")
        return refused, resumed

    refused, resumed = asyncio.run(scenario())
    assert refused["type"] == "error" and refused["code"] == "unavailable", refused
    assert resumed, "appends did not resume after PostgreSQL came back"
