"""How a worker answers a claimed turn, over a client that records its frames (no server):
a handler that answers at once is one append and no subscription; one that takes a while
starts its run at once and follows the session, so a cancel reaches it."""

from __future__ import annotations

import asyncio

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
