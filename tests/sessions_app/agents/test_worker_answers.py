"""How a worker answers a claimed turn, over a client that records its frames (no server):
a handler that answers at once is one append and no subscription; one that takes a while
starts its run at once and follows the session, so a cancel reaches it."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from sessions_app.agents.base import Turn
from sessions_app.agents.worker import Worker
from sessions_app.client import PublishError, SessionsClient

pytestmark = pytest.mark.engine_independent

TURN = Turn(id=7, session="chat", message="u-1", text="hi", agent="a", attempt=1,
            run_id="turn-7-1", message_offset="0000000005")  # fmt: skip


class Recorder(SessionsClient):
    """Answers every frame at once; keeps the appends and the sessions it was asked to follow."""

    def __init__(self, refuse: str | None = None) -> None:
        super().__init__("http://127.0.0.1:1", api_key="k", coalesce_seconds=0.01)
        self.appends: list[list[dict]] = []
        self.followed: list[tuple[str, str]] = []
        self.refuse = refuse

    async def request(self, frame, retries=-1):
        if frame["op"] == "publish":
            if self.refuse and any(e["type"] == "RUN_STARTED" for e in frame["events"]):
                raise PublishError({"type": "error", "code": self.refuse, "message": "no"})
            self.appends.append([e["type"] for e in frame["events"]])
        return {"type": "ack", "id": frame.get("id"), "offset": "0000000009"}

    async def follow(self, session):
        session.following = True
        self.followed.append((session.name, session.last_offset))
        return session


def answer(client, handler):
    async def go():
        worker = Worker(client, {"a": handler})
        await worker._answer(TURN)
        return worker

    return asyncio.run(go())


def test_a_handler_that_answers_at_once_is_one_append_with_its_run_start_and_no_subscription():
    async def noop(turn, run):
        await run.text("ok")

    client = Recorder()
    worker = answer(client, noop)
    assert client.appends == [["RUN_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT",
                               "TEXT_MESSAGE_END", "RUN_FINISHED"]]  # fmt: skip
    assert client.followed == [] and worker.answered == 1


def test_a_handler_that_takes_a_while_starts_its_run_first_and_a_cancel_reaches_it():
    seen = []

    async def slow(turn, run):
        session = run.session
        assert client.appends == [["RUN_STARTED"]]  # before any of its text
        assert client.followed == [("chat", "0000000005")]  # from the message on
        cancel = {"type": "CANCEL", "run": run.id, "offset": "0000000010", "data": {}}
        await session.receive({"type": "events", "events": [cancel]})
        seen.append(run.cancelled.is_set())
        await run.text("too late")  # raises RunCancelled

    client = Recorder()

    async def waiting(turn, run):
        await asyncio.sleep(0.01)
        await slow(turn, run)

    answer(client, waiting)
    assert seen == [True]
    assert client.appends == [["RUN_STARTED"], ["CONTROL_ACK", "RUN_FINISHED"]]


def test_a_fenced_run_start_stops_the_handler_before_it_writes():
    wrote = []

    async def waiting(turn, run):
        await asyncio.sleep(0.05)
        wrote.append(True)
        await run.text("should not land")

    client = Recorder(refuse="turn_fenced")
    worker = answer(client, waiting)
    assert wrote == [] and client.appends == [] and client.followed == []
    assert worker.answered == 0


class Backlog(Worker):
    """A worker over an endless backlog: records each claim's limit; a turn ends when told."""

    def __init__(self, **options) -> None:
        super().__init__(Recorder(), {"a": None}, concurrency=8, **options)
        self.limits: list[int] = []
        self.ends: dict[int, asyncio.Event] = {}

    async def _claim(self, limit: int) -> list[Turn]:
        self.limits.append(limit)
        made = [dataclasses.replace(TURN, id=len(self.ends) + i) for i in range(limit)]
        self.ends.update((turn.id, asyncio.Event()) for turn in made)
        return made

    async def _answer(self, turn: Turn) -> None:
        await self.ends[turn.id].wait()
        self.active.pop(turn.id, None)
        self.turns.pop(turn.id, None)


async def until(condition) -> None:
    for _ in range(2000):  # up to about 2 s
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the worker never got there")


async def settle() -> None:
    for _ in range(20):  # loop steps, no time: the fakes answer without any I/O
        await asyncio.sleep(0)


def claims_while_turns_end_one_by_one(**options) -> list[int]:
    async def go():
        worker, stop = Backlog(**options), asyncio.Event()
        serving = asyncio.create_task(worker._claim_until(stop))
        await until(lambda: len(worker.active) == 8)
        for turn_id in range(4):  # four turns end, one after another
            worker.ends[turn_id].set()
            await settle()  # the worker has done what it does for one freed slot
        await until(lambda: len(worker.active) == 8)
        stop.set()
        for end in worker.ends.values():
            end.set()
        await serving
        return worker.limits

    return asyncio.run(go())


def test_a_busy_worker_claims_for_several_freed_slots_at_once_not_one_claim_per_turn():
    # claim_gather is long here: the fourth freed slot, not the clock, sends the claim.
    assert claims_while_turns_end_one_by_one(claim_batch=4, claim_gather=30) == [8, 4]
    # One claim per finished turn (what a worker did before): four claims.
    assert claims_while_turns_end_one_by_one(claim_batch=1) == [8, 1, 1, 1, 1]


def test_a_lone_freed_slot_is_claimed_after_claim_gather_seconds():
    async def go():
        worker, stop = Backlog(claim_batch=4, claim_gather=0.01), asyncio.Event()
        serving = asyncio.create_task(worker._claim_until(stop))
        await until(lambda: len(worker.active) == 8)
        worker.ends[0].set()
        await until(lambda: worker.limits == [8, 1])
        stop.set()
        for end in worker.ends.values():
            end.set()
        await serving

    asyncio.run(go())
