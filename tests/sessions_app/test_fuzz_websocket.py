"""Fuzzing WebSocket frames (hypothesis) through the real ASGI stack.

Whatever a client sends: every frame is answered (an error frame for a bad one), never with
``internal``; the connection and its other subscriptions stay up; and the log grows by exactly
the entries the server acknowledged, so nothing is written for rejected input.
``FUZZ_WS_EXAMPLES`` scales the run (``bench/chaos.py`` runs at least 10,000 frames).
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from channels.db import database_sync_to_async
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions_app import log, services
from sessions_app.consumers import OPERATIONS
from sessions_app.domain.events import RULES as EVENT_TYPES
from sessions_app.models import Entry, Session
from tests.sessions_app.conftest import connect

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("FUZZ_WS_EXAMPLES", "40"))
COUNT_FILE = os.environ.get("FUZZ_WS_COUNT_FILE")
FRAME_LIMIT = 4096
WATCHED, TARGET = "watched", "target"

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
SESSIONS = st.sampled_from([TARGET, "absent", "", "x" * 300]) | st.text(max_size=8) | SCALARS
OFFSETS = (
    st.sampled_from(["-1", "now", "snapshot", "0000000000000000_0000000000000001",
                     "9999999999999999_9999999999999999", "0000000000000000_-000000000000001",
                     "-2", "1", "0_0", " -1"])
    | SCALARS
)  # fmt: skip
EVENT = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(EVENT_TYPES)) | st.text(max_size=10)},
    optional={
        "run": st.text(max_size=6) | SCALARS,
        "message": st.text(max_size=6) | SCALARS,
        "agent": SCALARS,
        "data": st.dictionaries(
            st.sampled_from(
                [
                    "delta",
                    "message",
                    "name",
                    "value",
                    "snapshot",
                    "toolCallId",
                    "role",
                    "outcome",
                    "parentRunId",
                    "code",
                ]
            ),
            JSON,
            max_size=3,
        )
        | JSON,  # fmt: skip
        "offset": SCALARS,
        "time": SCALARS,
        "extra": JSON,
    },
)
PRODUCER = (
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.text(max_size=6) | SCALARS,
            "epoch": st.integers(-3, 2**64) | SCALARS,
            "seq": st.integers(-3, 2**64) | SCALARS,
        },
    )
    | JSON
)
OPS = st.sampled_from(sorted(OPERATIONS)) | st.text(max_size=10) | SCALARS
FRAME = st.fixed_dictionaries(
    {"op": OPS},
    optional={
        "id": st.text(max_size=4) | st.integers(-5, 5) | JSON,
        "session": SESSIONS,
        "after": OFFSETS,
        "events": st.lists(EVENT, max_size=4) | JSON,
        "producer": PRODUCER,
        "run": st.text(max_size=6) | SCALARS,
        "text": st.text(max_size=20) | SCALARS,
        "reason": SCALARS,
    },
)
RAW = (
    FRAME.map(json.dumps)
    | JSON.map(json.dumps)
    | st.text(min_size=1, max_size=40)
    | st.just("x" * (FRAME_LIMIT + 1))
    | st.just(json.dumps({"op": "publish", "session": TARGET, "events": [
        {"type": "CUSTOM", "data": {"name": "big", "value": "x" * FRAME_LIMIT}}]}))
)  # fmt: skip
ANSWERS = {"error", "ack", "caught_up", "pong", "unsubscribed", "snapshot", "presence",
           "claim_stopped", "turns"}  # fmt: skip


@pytest.fixture
def sessions(alice):
    return (
        Session.objects.create(name=WATCHED, owner=alice),
        Session.objects.create(name=TARGET, owner=alice),
    )


@pytest.fixture(autouse=True)
def _small_limits(settings):
    settings.SESSIONS_APP = {
        "MAX_FRAME_BYTES": FRAME_LIMIT,
        "MAX_EVENT_BYTES": 2048,
        "MAX_SUBSCRIPTIONS_PER_CONNECTION": 3,
        "MAX_FRAMES_PER_SECOND": 100_000,  # floods have their own test (test_websocket.py)
        "FRAME_BURST": 100_000,
    }


entries = database_sync_to_async(lambda: Entry.objects.count())


async def exchange(client, raw: str, marker: str) -> list[dict]:
    """Send one fuzzed frame then a ping; return what came back before the pong."""
    await client.send(raw)
    await client.send({"op": "ping", "id": marker})
    got = []
    while True:
        frame = await client.recv(timeout=10)
        if frame.get("type") == "pong" and frame.get("id") == marker:
            return got
        got.append(frame)


def _count(frames: int) -> None:
    with open(COUNT_FILE or os.devnull, "a") as out:
        out.write(f"{frames}\n")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(RAW, min_size=1, max_size=6))
async def test_fuzzed_frames_are_answered_and_write_only_what_is_acknowledged(
    alice, sessions, frames
):
    watched = sessions[0]
    async with connect(alice) as client:
        assert (await client.subscribe(WATCHED))[1]["type"] == "caught_up"
        before, acknowledged = await entries(), 0
        for i, raw in enumerate(frames):
            replies = await exchange(client, raw, f"mark-{i}")
            answers = [f for f in replies if f.get("type") in ANSWERS]
            assert answers, f"no answer to {raw[:200]!r}: {replies}"
            internal = [f for f in replies if f.get("code") == "internal"]
            assert not internal, f"server error on {raw[:200]!r}"
            for frame in answers:
                if frame["type"] == "ack" and not frame.get("duplicate"):
                    acknowledged += len(frame["offsets"])
        assert await entries() - before == acknowledged, "rejected input was written"
        if COUNT_FILE:  # bench/chaos.py counts the frames it fuzzed
            await asyncio.to_thread(_count, len(frames))
        # The connection and its first subscription are still up.
        probe = {"type": "CUSTOM", "data": {"name": "probe", "value": 1}}
        await log.append(services.request(watched.pk, [probe]))
        while True:
            frame = await client.recv(timeout=10)
            if frame["type"] == "events" and frame["session"] == WATCHED:
                assert frame["events"][-1]["data"]["name"] == "probe"
                break


PRODUCERS = [{"id": 5, "epoch": 0, "seq": 0}, {"id": "p", "epoch": -1, "seq": 0},
             {"id": "p", "epoch": 0, "seq": "1"}, {"id": "p", "epoch": 0}, "p", [1],
             {"id": "p", "epoch": 0, "seq": 2**70}, {"id": "", "epoch": 0, "seq": 0}]  # fmt: skip


@pytest.mark.parametrize("producer", PRODUCERS, ids=[json.dumps(p) for p in PRODUCERS])
async def test_a_malformed_producer_is_a_bad_request_and_writes_nothing(alice, sessions, producer):
    async with connect(alice) as client:
        before = await entries()
        reply = await client.publish(TARGET, [{"type": "CUSTOM", "data": {"name": "n"}}],
                                     producer=producer)  # fmt: skip
        assert reply["type"] == "error" and reply["code"] == "bad_request", reply
        assert await entries() == before


async def test_too_many_events_in_one_publish_is_limit_exceeded_and_writes_nothing(
    alice, sessions, settings
):
    settings.SESSIONS_APP = {**settings.SESSIONS_APP, "MAX_EVENTS_PER_PUBLISH": 3}
    events = [{"type": "CUSTOM", "data": {"name": "n", "value": i}} for i in range(4)]
    async with connect(alice) as client:
        before = await entries()
        reply = await client.publish(TARGET, events)
        assert (reply["code"], reply["limit"]) == ("limit_exceeded", "events"), reply
        assert (await client.publish(TARGET, events[:3]))["type"] == "ack"
        assert await entries() == before + 3


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
async def test_numbers_json_has_no_form_for_are_refused_and_write_nothing(alice, sessions, value):
    frame = '{"op":"publish","id":"p","session":"%s","events":[{"type":"CUSTOM","data":{"name":"n","value":%s}}]}'
    async with connect(alice) as client:
        before = await entries()
        await client.send(frame % (TARGET, value))
        reply = await client.recv_type("error", "ack")
        assert reply["type"] == "error" and reply["code"] == "bad_request", reply
        assert await entries() == before
        snapshot, _ = await client.subscribe(TARGET, after="snapshot")
        assert snapshot[0]["type"] == "snapshot"  # the log is still readable


@pytest.mark.parametrize(
    "event",
    [
        {"type": "RUN_STARTED", "run": "r\x00"},
        {"type": "RUN_ERROR", "run": "r1", "data": {"message": "boom\x00"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": "m1", "data": {"delta": "\x00"}},
    ],
    ids=["run id", "run error", "text"],
)
async def test_nul_characters_are_refused_before_the_commit_and_sink_nobody_else(
    alice, sessions, event
):
    # PostgreSQL stores no NUL in text or jsonb: refused at the door, not by a failing commit
    # that every append of the same group commit would share.
    async with connect(alice) as client, connect(alice) as other:
        before = await entries()
        good = asyncio.ensure_future(
            other.publish(TARGET, [{"type": "CUSTOM", "data": {"name": "ok"}}])
        )
        reply = await client.publish(TARGET, [event])
        assert reply["type"] == "error" and reply["code"] == "bad_event", reply
        assert "NUL" in reply["message"]
        assert (await good)["type"] == "ack"
        assert await entries() == before + 1
