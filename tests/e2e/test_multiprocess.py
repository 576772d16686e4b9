"""Two ASGI server processes on one PostgreSQL and one Redis: one session, exactly once, in order."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict

import pytest

from tests.e2e.servers import daphne_server, migrate, postgres_database, session_with_token
from tests.e2e.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.real_engines]

PRODUCERS = 4
FRAMES_PER_PRODUCER = 60
EVENTS_PER_FRAME = 3
TOTAL = PRODUCERS * FRAMES_PER_PRODUCER * EVENTS_PER_FRAME


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    with postgres_database(os.environ["DATABASE_URL"], f"test_mp_{os.getpid()}") as db_url:
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "CHANNEL_LAYER_PREFIX": f"mp{os.getpid()}",
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
        migrate(env)
        token = session_with_token(env, "shared")
        with daphne_server(env) as first, daphne_server(env) as second:
            yield first, second, token


async def produce(base, token, producer):
    client = await WsClient.open(base, token)
    for seq in range(FRAMES_PER_PRODUCER):
        events = [
            {"type": "CUSTOM", "agent": producer, "data": {"name": "tick", "value": [seq, i]}}
            for i in range(EVENTS_PER_FRAME)
        ]
        ack = await client.publish(
            "shared", events, producer={"id": producer, "epoch": 0, "seq": seq}
        )
        assert ack["type"] == "ack", ack
    await client.close()


def check_complete(events):
    offsets = [e["offset"] for e in events]
    assert len(offsets) == TOTAL, f"{len(offsets)} of {TOTAL}"
    assert [int(o.replace("_", "")) for o in offsets] == list(range(1, TOTAL + 1))
    by_producer = defaultdict(list)
    for event in events:
        by_producer[event["agent"]].append(tuple(event["data"]["value"]))
    for ticks in by_producer.values():  # each producer's events, in the order it sent them
        assert ticks == [
            (s, i) for s in range(FRAMES_PER_PRODUCER) for i in range(EVENTS_PER_FRAME)
        ]


def test_concurrent_producers_on_two_processes_reach_every_subscriber_exactly_once(two_servers):
    first, second, token = two_servers

    async def scenario():
        subscribers = [await WsClient.open(base, token) for base in (first, second, first)]
        for subscriber in subscribers:
            assert (await subscriber.subscribe("shared"))["type"] == "caught_up"
        roaming = subscribers[2]
        producers = [
            asyncio.ensure_future(produce(base, token, f"p{i}"))
            for i, base in enumerate((first, second, first, second))
        ]
        # The roaming subscriber's socket closes mid-stream; it resumes on the other process.
        await roaming.follow_until(TOTAL // 3)
        await roaming.close()
        resumed = await WsClient.open(second, token)
        resumed.events, resumed.last_offset = roaming.events, roaming.last_offset
        assert (await resumed.subscribe("shared"))["type"] == "caught_up"
        await asyncio.gather(*producers)
        for subscriber in (*subscribers[:2], resumed):
            await subscriber.follow_until(TOTAL)
            assert await subscriber.quiet_for(0.5), "entries beyond the total: duplicates"
            check_complete(subscriber.events)
            await subscriber.close()

    asyncio.run(scenario())
