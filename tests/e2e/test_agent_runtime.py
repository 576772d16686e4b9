"""Turns dispatched to agent workers, against a real server: each message answered once,
the double-texting policies, a lost worker's turn taken over, a drain that hands turns back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest

from sessions_app.agents.worker import Worker
from sessions_app.client import PublishError, SessionsClient
from tests.e2e import runtime_agents
from tests.e2e.servers import ROOT, daphne_server, manage_output, site_database

pytestmark = pytest.mark.e2e

LEASE = 5.0
SETUP = """
from django.contrib.auth import get_user_model
from sessions_app.access import mint_token
from sessions_app.keys import create_key
from sessions_app.models import Session
user, _ = get_user_model().objects.get_or_create(username="alice")
robot, _ = get_user_model().objects.get_or_create(username="robot")
for i in range({sessions}):
    Session.objects.get_or_create(name=f"chat-{{i}}", defaults={{"owner": user}})
print(mint_token(user))
print(create_key(robot, "workers", agents="echo,noop")[1])
print(create_key(user, "alice's own", all_sessions=True)[1])
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    settings = {"TURN_LEASE_SECONDS": LEASE, "TURNS": {"agent": "echo"}}
    with site_database(tmp_path_factory.mktemp("runtime"), "runtime") as env:
        env = {**env, "SESSIONS_APP_JSON": json.dumps(settings)}
        token, worker_key, own_key = manage_output(
            "shell", "-c", SETUP.format(sessions=44), env=env
        ).split()[-3:]
        with daphne_server(env) as base:
            yield {"base": base, "env": env, "token": token, "key": worker_key, "own": own_key}


def events(site, name):
    reply = httpx.get(
        f"{site['base']}/api/sessions/{name}/events?limit=1000",
        headers={"Authorization": f"Bearer {site['own']}"},
    )
    reply.raise_for_status()
    return reply.json()["events"]


def patch_turns(site, name, policy):
    reply = httpx.patch(
        f"{site['base']}/api/sessions/{name}",
        json={"metadata": {"turns": policy}},
        headers={"Authorization": f"Bearer {site['own']}"},
    )
    reply.raise_for_status()


def answers(site, name):
    """Per user message: the turn runs that answered it, with their outcome."""
    found = []
    outcome = {}
    for e in events(site, name):
        if e["type"] == "RUN_STARTED" and "turn" in e.get("data", {}):
            found.append(e["run"])
        if e["type"] in ("RUN_FINISHED", "RUN_ERROR") and e.get("run"):
            outcome[e["run"]] = e.get("data", {}).get("outcome") or e["data"].get("code") or "error"
    return [(run, outcome.get(run)) for run in found]


async def until(predicate, timeout=20.0, every=0.1):
    """Wait for ``predicate`` (blocking HTTP reads: asked in a thread, so that the workers on
    this event loop keep renewing their leases meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(every)
    raise AssertionError("condition not reached in time")


class Device:
    """A user's device: the SDK with the user's token."""

    def __init__(self, site):
        self.client = SessionsClient(site["base"], token=site["token"])

    async def __aenter__(self):
        await self.client.connect()
        return self

    async def __aexit__(self, *exc):
        await self.client.close()

    async def send(self, name, text):
        session = await self.client.session(name)
        return await session.send_message(text)


async def serving(site, handlers, coro, workers=1, **options):
    """Run ``workers`` in-process workers while ``coro`` runs; return its result and them."""
    stop = asyncio.Event()
    clients = [SessionsClient(site["base"], api_key=site["key"]) for _ in range(workers)]
    for client in clients:
        await client.connect()
    pool = [Worker(c, handlers, wait=5, **options) for c in clients]
    tasks = [asyncio.create_task(w.serve(stop)) for w in pool]
    try:
        return await coro, pool
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for client in clients:
            await client.close()


def test_a_message_is_answered_by_a_worker_in_a_run_that_names_its_turn(site):
    async def scenario():
        async with Device(site) as device:
            ack = await device.send("chat-0", "hello there")
            await until(lambda: any(o for _, o in answers(site, "chat-0")))
            return ack

    ack, _ = asyncio.run(serving(site, {"echo": runtime_agents.echo}, scenario()))
    [(run, outcome)] = answers(site, "chat-0")
    assert outcome == "success"
    log = events(site, "chat-0")
    started = next(e for e in log if e["type"] == "RUN_STARTED")
    assert started["offset"] > ack["offsets"][-1]  # after the message it answers
    text = "".join(e["data"]["delta"] for e in log if e["type"] == "TEXT_MESSAGE_CONTENT"
                   and e.get("run") == run)  # fmt: skip
    assert text.strip() == "you said: hello there"


def test_two_workers_answer_every_message_exactly_once(site):
    names = [f"chat-{i}" for i in range(1, 21)]

    async def scenario():
        async with Device(site) as device:
            for round_ in range(2):
                await asyncio.gather(*(device.send(n, f"question {round_}") for n in names))
            await until(
                lambda: all(sum(1 for _, o in answers(site, n) if o) == 2 for n in names),
                timeout=60,
            )

    _, pool = asyncio.run(
        serving(site, {"echo": runtime_agents.noop}, scenario(), workers=2, concurrency=8)
    )
    for name in names:
        runs = answers(site, name)
        assert [o for _, o in runs] == ["success", "success"], (name, runs)
    assert sum(w.answered for w in pool) == 40
    assert all(w.answered > 0 for w in pool)  # both took a share


def test_a_worker_serving_more_turns_than_one_claim_takes_still_claims_and_answers(site):
    # A claim takes at most 50 turns; a worker of --concurrency 60 used to ask for 60, was
    # refused, and retried for ever without answering anything.
    names = [f"chat-{i}" for i in range(41, 44)]

    async def scenario():
        async with Device(site) as device:
            await asyncio.gather(*(device.send(n, "hello") for n in names))
            await until(lambda: all(any(o for _, o in answers(site, n)) for n in names))

    _, [worker] = asyncio.run(
        serving(site, {"echo": runtime_agents.noop}, scenario(), concurrency=60)
    )
    assert worker.answered == 3
    for name in names:
        assert [o for _, o in answers(site, name)] == ["success"]


def test_a_worker_whose_claims_can_never_succeed_stops_with_the_reason(site):
    # A user's token may not claim turns (claims need an API key): the worker says so and stops
    # instead of asking again and again while nothing is answered.
    async def scenario():
        async with SessionsClient(site["base"], token=site["token"]) as client:
            with pytest.raises(PublishError) as refused:
                await asyncio.wait_for(Worker(client, {"echo": runtime_agents.noop}).serve(), 30)
            return refused.value.code

    assert asyncio.run(scenario()) == "forbidden"


def test_queue_answers_a_second_message_after_the_first(site):
    async def scenario():
        async with Device(site) as device:
            await device.send("chat-21", "first question with several words")
            await device.send("chat-21", "second")
            await until(lambda: [o for _, o in answers(site, "chat-21")] == ["success"] * 2)

    asyncio.run(serving(site, {"echo": runtime_agents.echo}, scenario()))
    log = events(site, "chat-21")
    first, second = [e["run"] for e in log if e["type"] == "RUN_STARTED"]
    first_end = next(e["offset"] for e in log if e["type"] == "RUN_FINISHED" and e["run"] == first)
    second_start = next(
        e["offset"] for e in log if e["type"] == "RUN_STARTED" and e["run"] == second
    )
    assert first_end < second_start  # one turn of a session at a time, oldest first


def test_steer_policy_steers_the_running_answer_instead_of_queueing(site):
    patch_turns(site, "chat-22", {"on_busy": "steer"})

    async def scenario():
        async with Device(site) as device:
            await device.send("chat-22", " ".join(["word"] * 60))
            await until(lambda: any(e["type"] == "TEXT_MESSAGE_CONTENT" and e.get("run")
                                    for e in events(site, "chat-22")))  # fmt: skip
            await device.send("chat-22", "shorter please")
            await until(lambda: any(o for _, o in answers(site, "chat-22")))

    asyncio.run(serving(site, {"echo": runtime_agents.echo}, scenario()))
    log = events(site, "chat-22")
    assert len(answers(site, "chat-22")) == 1  # no second turn
    steer = next(e for e in log if e["type"] == "STEER")
    assert steer["data"]["text"] == "shorter please"
    text = "".join(e["data"]["delta"] for e in log if e["type"] == "TEXT_MESSAGE_CONTENT"
                   and e.get("run"))  # fmt: skip
    assert "[steered: shorter please]" in text


def test_interrupt_policy_cancels_the_running_answer_and_answers_the_new_message(site):
    patch_turns(site, "chat-23", {"on_busy": "interrupt"})

    async def scenario():
        async with Device(site) as device:
            await device.send("chat-23", " ".join(["word"] * 80))
            await until(lambda: any(e["type"] == "TEXT_MESSAGE_CONTENT" and e.get("run")
                                    for e in events(site, "chat-23")))  # fmt: skip
            await device.send("chat-23", "never mind")
            await until(lambda: len([o for _, o in answers(site, "chat-23") if o]) == 2)

    asyncio.run(serving(site, {"echo": runtime_agents.echo}, scenario()))
    assert [o for _, o in answers(site, "chat-23")] == ["cancelled", "success"]
    cancel = next(e for e in events(site, "chat-23") if e["type"] == "CANCEL")
    assert cancel["data"]["reason"] == "interrupt"


def test_reject_policy_refuses_a_message_while_the_agent_answers(site):
    patch_turns(site, "chat-24", {"on_busy": "reject"})

    async def scenario():
        async with Device(site) as device:
            await device.send("chat-24", " ".join(["word"] * 60))
            await until(lambda: answers(site, "chat-24"))
            with pytest.raises(Exception) as refused:
                await device.send("chat-24", "are you there?")
            await until(lambda: any(o for _, o in answers(site, "chat-24")))
            await device.send("chat-24", "thanks")  # idle again: accepted
            return refused.value

    refused, _ = asyncio.run(serving(site, {"echo": runtime_agents.echo}, scenario()))
    assert getattr(refused, "code", None) == "busy"
    texts = [e["data"]["delta"] for e in events(site, "chat-24")
             if e["type"] == "TEXT_MESSAGE_CONTENT" and not e.get("run")]  # fmt: skip
    assert "are you there?" not in texts and "thanks" in texts


def test_a_session_with_no_agent_makes_no_turn(site):
    patch_turns(site, "chat-25", {"agent": None})

    async def scenario():
        async with Device(site) as device:
            await device.send("chat-25", "just a note")
            await asyncio.sleep(1.5)

    asyncio.run(serving(site, {"echo": runtime_agents.echo}, scenario()))
    assert answers(site, "chat-25") == []


# A worker process's first answer includes its start-up (Django's, the SDK's connect): on a
# loaded CI machine that took more than 20 s.
STARTED = 90.0
_processes: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test():
    """A test that fails before it stops its worker would leave the worker answering the
    next tests' messages (a failure there that is not theirs): kill what is left."""
    yield
    while _processes:
        process = _processes.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


def _worker_process(site, *modules, pace="0.01", drain="20", concurrency="4"):
    env = {**site["env"], "RUNTIME_AGENT_PACE": pace}
    args = [sys.executable, "manage.py", "run_agents", *modules, "--url", site["base"],
            "--api-key", site["key"], "--concurrency", concurrency, "--drain", drain]  # fmt: skip
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
    _processes.append(process)
    return process


@pytest.mark.timeout(300)  # the worker's start-up may take STARTED
def test_a_killed_worker_s_turn_is_answered_by_another_after_its_lease(site):
    slow = _worker_process(site, "tests.e2e.runtime_agents", pace="0.5")

    async def scenario():
        async with Device(site) as device:
            await device.send("chat-26", " ".join(["word"] * 40))
            await until(lambda: any(e["type"] == "TEXT_MESSAGE_CONTENT" and e.get("run")
                                    for e in events(site, "chat-26")), STARTED)  # fmt: skip
            os.kill(slow.pid, signal.SIGKILL)
            slow.wait()
            await serving(
                site,
                {"echo": runtime_agents.noop},
                until(
                    lambda: [o for _, o in answers(site, "chat-26")] == ["agent_lost", "success"],
                    timeout=30,
                ),  # fmt: skip
            )

    asyncio.run(scenario())
    first, second = answers(site, "chat-26")
    assert first[1] == "agent_lost" and second[1] == "success"
    assert first[0].endswith("-1") and second[0].endswith("-2")  # the second attempt
    error = next(e for e in events(site, "chat-26") if e["type"] == "RUN_ERROR")
    assert "another worker takes the turn" in error["data"]["message"]


@pytest.mark.timeout(300)  # the worker's start-up may take STARTED
def test_sigterm_drains_the_worker_finishing_its_running_turn(site):
    worker = _worker_process(site, "tests.e2e.runtime_agents", pace="0.05")

    async def scenario():
        async with Device(site) as device:
            await device.send("chat-27", " ".join(["word"] * 20))
            await until(lambda: any(e["type"] == "TEXT_MESSAGE_CONTENT" and e.get("run")
                                    for e in events(site, "chat-27")), STARTED)  # fmt: skip
            worker.send_signal(signal.SIGTERM)

    asyncio.run(scenario())
    assert worker.wait(timeout=30) == 0
    assert [o for _, o in answers(site, "chat-27")] == ["success"]  # finished, not cut


def test_a_fenced_run_cannot_start_a_turn_it_does_not_hold(site):
    async def scenario():
        async with SessionsClient(site["base"], api_key=site["own"]) as client:
            session = await client.session("chat-28")
            await session.send_message("who answers?")
            with pytest.raises(Exception) as refused:
                async with session.run(agent="echo", run_id="turn-999-1", turn=999):
                    pass
            return refused.value

    refused = asyncio.run(scenario())
    assert getattr(refused, "code", None) == "turn_fenced"
    assert answers(site, "chat-28") == []


def test_many_turns_over_three_worker_processes_each_answered_once(site):
    names = [f"chat-{i}" for i in range(29, 40)]
    # 8 turns at once: each worker spreads its turns over two sockets
    workers = [_worker_process(site, "tests.e2e.runtime_agents", concurrency="8") for _ in range(3)]
    for name in names:
        patch_turns(site, name, {"agent": "noop"})

    async def scenario():
        async with Device(site) as device:
            for round_ in range(6):
                await asyncio.gather(*(device.send(n, f"q{round_}") for n in names))
            await until(
                lambda: all(len([o for _, o in answers(site, n) if o]) == 6 for n in names),
                timeout=90,
            )

    try:
        asyncio.run(scenario())
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
    per_message = Counter()
    for name in names:
        runs = answers(site, name)
        assert [o for _, o in runs] == ["success"] * 6, (name, runs)
        per_message.update(run.rsplit("-", 1)[0] for run, _ in runs)
    assert set(per_message.values()) == {1}  # no turn answered twice


@pytest.mark.timeout(300)  # the worker's start-up may take STARTED
def test_a_worker_stopped_before_its_turn_ends_hands_the_turn_back(site):
    worker = _worker_process(site, "tests.e2e.runtime_agents", pace="1.0", drain="0.5")

    async def scenario():
        async with Device(site) as device:
            await device.send("chat-40", " ".join(["word"] * 40))
            await until(lambda: any(e["type"] == "TEXT_MESSAGE_CONTENT" and e.get("run")
                                    for e in events(site, "chat-40")), STARTED)  # fmt: skip
            worker.send_signal(signal.SIGTERM)

    asyncio.run(scenario())
    assert worker.wait(timeout=30) == 0
    # Handed back (not left to its lease): the server ended the run and offers the turn again.
    error = next(e for e in events(site, "chat-40") if e["type"] == "RUN_ERROR")
    assert "shut down" in error["data"]["message"], error


def test_a_worker_stopped_while_its_claim_waits_claims_nothing_more(site):
    reply = httpx.post(f"{site['base']}/api/sessions/", json={"name": "chat-after-stop"},
                       headers={"Authorization": f"Bearer {site['own']}"})  # fmt: skip
    reply.raise_for_status()

    async def scenario():
        async with SessionsClient(site["base"], api_key=site["key"]) as client:
            stop = asyncio.Event()
            stopped = Worker(client, {"echo": runtime_agents.noop}, wait=30)
            task = asyncio.create_task(stopped.serve(stop))
            await asyncio.sleep(1.0)  # its claim waits on the server
            stop.set()
            await task  # its socket stays open: a claim left waiting there would take the turn
            async with Device(site) as device:
                await device.send("chat-after-stop", "anyone there?")
            await serving(
                site,
                {"echo": runtime_agents.noop},
                until(lambda: any(o for _, o in answers(site, "chat-after-stop")), timeout=60),
            )

    asyncio.run(scenario())
    [(run, outcome)] = answers(site, "chat-after-stop")
    assert outcome == "success" and run.endswith("-1")  # the first attempt: never taken before
