"""Three ASGI workers behind a round-robin proxy: subscribers, publishers, cancels across all."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from sessions_app.client import SessionsClient
from sessions_app.tcp_proxy import TcpProxy
from tests.e2e.servers import DaphneProcess, site_database, token_and_key
from tests.e2e.wsclient import WsClient

pytestmark = [pytest.mark.e2e, pytest.mark.real_engines]
EVENTS = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with site_database(tmp_path_factory.mktemp("scale"), "scale") as env:
        token, key = token_and_key(env, "shared", user="agent")
        workers = [DaphneProcess(env) for _ in range(3)]
        for worker in workers:
            worker.start()
        proxy = TcpProxy([w.port for w in workers]).start()
        base = proxy.url
        try:
            yield {"base": base, "token": token, "key": key, "proxy": proxy}
        finally:
            proxy.stop()
            for worker in workers:
                worker.__exit__()


def test_subscribers_publishers_and_cancels_work_across_three_workers(cluster):
    base, token = cluster["base"], cluster["token"]

    async def scenario():
        # Round robin: consecutive connections land on consecutive workers.
        subscribers = [await WsClient.open(base, token) for _ in range(3)]
        for subscriber in subscribers:
            assert (await subscriber.subscribe("shared"))["type"] == "caught_up"
        async with SessionsClient(base, api_key=cluster["key"]) as agent:
            session = await agent.session("shared")
            async with session.run(agent="writer") as run:
                publishers = [await WsClient.open(base, token) for _ in range(2)]
                for i in range(EVENTS // 2):
                    for n, publisher in enumerate(publishers):
                        event = {"type": "CUSTOM", "data": {"name": "tick", "value": [n, i]}}
                        assert (await publisher.publish("shared", [event]))["type"] == "ack"
                # A device on yet another worker presses stop; the agent, elsewhere, hears it.
                phone = await WsClient.open(base, token)
                assert (await phone.publish("shared", [{"type": "CANCEL", "run": run.id}]))[
                    "type"
                ] == "ack"
                await asyncio.wait_for(run.cancelled.wait(), 5)
                for client in (*publishers, phone):
                    await client.close()
        total = EVENTS + 4  # ticks, RUN_STARTED, CANCEL, CONTROL_ACK, RUN_FINISHED
        for subscriber in subscribers:
            await subscriber.follow_until(total)
            assert await subscriber.quiet_for(0.5)
            offsets = [int(e["offset"].replace("_", "")) for e in subscriber.events]
            assert offsets == list(range(1, total + 1))
            assert subscriber.events[-1]["type"] == "RUN_FINISHED"
            assert subscriber.events[-1]["data"]["outcome"] == "cancelled"
            await subscriber.close()

    asyncio.run(scenario())
    assert cluster["proxy"].accepted >= 7


def test_rest_and_readiness_through_the_proxy(cluster):
    headers = {"Authorization": f"Bearer {cluster['key']}"}
    answers = [httpx.get(cluster["base"] + "/ready").json()["status"] for _ in range(3)]
    assert answers == ["ready"] * 3
    runs = httpx.get(f"{cluster['base']}/api/sessions/shared/runs", headers=headers).json()["items"]
    assert [r["status"] for r in runs] == ["cancelled"]
