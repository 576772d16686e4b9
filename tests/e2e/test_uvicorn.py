"""The demo site under uvicorn, the server docs/sessions/durable-streams.md suggests for the
HTTP doors: WebSocket delivery, the Durable Streams door (its fast path and a live read), and
the cut of a socket that stops reading, which looks through the server's transport
(sessions_app/backpressure.py) and so depends on the server."""

from __future__ import annotations

import asyncio
import json
import struct
import time

import httpx
import pytest

from tests.e2e.servers import DaphneProcess, session_with_token, site_database
from tests.e2e.wsclient import RawSocket, WsClient

pytest.importorskip("uvicorn")
pytestmark = [pytest.mark.e2e]

CLOSE_SLOW_CONSUMER = 4008
SLOW_CONSUMER_TIMEOUT = 1.0  # tests/e2e/chaos/settings.py


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with site_database(tmp_path_factory.mktemp("uvicorn"), "uvicorn") as env:
        env = {
            **env,
            "DJANGO_SETTINGS_MODULE": "tests.e2e.chaos.settings",
            "SESSIONS_ANONYMOUS_STREAM_PREFIX": "public/",
        }
        token = session_with_token(env, "shared")
        session_with_token(env, "slow")
        with DaphneProcess(env, server="uvicorn") as server:
            yield server, token


def test_websocket_subscribers_get_what_is_published(site):
    server, token = site

    async def scenario():
        reader, writer = (
            await WsClient.open(server.base, token),
            await WsClient.open(server.base, token),
        )
        assert (await reader.subscribe("shared"))["type"] == "caught_up"
        events = [{"type": "CUSTOM", "data": {"name": "n", "value": i}} for i in range(3)]
        assert (await writer.publish("shared", events))["type"] == "ack"
        await reader.follow_until(3)
        await reader.close()
        await writer.close()
        return reader.events

    got = asyncio.run(scenario())
    assert [e["data"]["value"] for e in got] == [0, 1, 2]


def test_the_durable_streams_door_appends_reads_and_follows_live(site):
    server, _ = site
    url = server.base + "/v1/stream/public/u"
    with httpx.Client(timeout=10) as client:
        assert client.put(url, headers={"Content-Type": "application/json"}).status_code == 201
        for i in range(2):
            posted = client.post(
                url, content=json.dumps({"i": i}), headers={"Content-Type": "application/json"}
            )
            assert posted.status_code == 204
        assert client.get(url, params={"offset": "-1"}).json() == [{"i": 0}, {"i": 1}]
        with client.stream("GET", url, params={"offset": "-1", "live": "sse"}) as live:
            text = ""
            for chunk in live.iter_text():
                text += chunk
                if "event: control" in text:
                    break
    assert 'data:[{"i":0},{"i":1}]' in text.replace(" ", "")


def test_a_socket_that_stops_reading_is_cut_with_4008(site):
    server, token = site
    stalled = RawSocket(server.port, token)
    assert json.loads(stalled.frame()[1])["type"] == "hello"
    stalled.send({"op": "subscribe", "id": "s", "session": "slow", "after": "now"})
    while json.loads(stalled.frame()[1]).get("type") != "caught_up":
        pass
    chunk = "x" * 30_000

    async def flood():
        publisher = await WsClient.open(server.base, token)
        for i in range(80):  # 80 publishes of 210 kB: 17 MB, far past the 1 MiB limit
            events = [{"type": "CUSTOM", "data": {"name": "bulk", "value": [i, j, chunk]}}
                      for j in range(7)]  # fmt: skip
            assert (await publisher.publish("slow", events))["type"] == "ack"
        await publisher.close()

    asyncio.run(flood())
    time.sleep(SLOW_CONSUMER_TIMEOUT + 1)
    close_code, dropped = None, False
    try:
        while True:
            opcode, payload = stalled.frame()
            if opcode == 0x8:
                close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                break
    except (ConnectionError, OSError):
        dropped = True
    stalled.sock.close()
    assert close_code == CLOSE_SLOW_CONSUMER or (close_code is None and dropped), (
        close_code,
        dropped,
    )
    assert stalled.received < 17_000_000 / 2, "the server kept everything for a socket not reading"
    assert "closing a slow consumer" in server.log.read_text()
