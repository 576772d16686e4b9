"""Live control and publish paths against one real server on PostgreSQL + Redis:

- cancel latency: from a device's cancel frame to the agent seeing ``run.cancelled``;
- REST batch publish throughput, and WebSocket publish throughput, batched and one by one.

``python -m bench control [--cancels 40] [--batches 40]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def cancel_latency(base: str, key: str, token: str, count: int) -> list[float]:
    from sessions_app.client import SessionsClient
    from tests.e2e.wsclient import WsClient

    latencies = []
    async with SessionsClient(base, api_key=key) as client:
        session = await client.session("bench")
        device = await WsClient.open(base, token)
        for i in range(count):
            async with session.run(agent="writer") as run:
                await run.text("partial answer ")
                await run.flush()
                sent = time.perf_counter()
                await device.send({"op": "cancel", "id": i, "session": "bench", "run": run.id})
                await asyncio.wait_for(run.cancelled.wait(), 10)
                latencies.append(time.perf_counter() - sent)
        await device.close()
    return latencies


async def ws_publish(base: str, token: str, frames: int, per_frame: int) -> float:
    from tests.e2e.wsclient import WsClient

    client = await WsClient.open(base, token)
    event = {"type": "CUSTOM", "data": {"name": "tick", "value": "x" * 60}}
    started = time.perf_counter()
    for _ in range(frames):
        ack = await client.publish("bench", [event] * per_frame)
        assert ack["type"] == "ack", ack
    took = time.perf_counter() - started
    await client.close()
    return frames * per_frame / took


def rest_publish(base: str, key: str, batches: int, per_batch: int) -> float:
    event = {"type": "CUSTOM", "data": {"name": "tick", "value": "x" * 60}}
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as http:
        started = time.perf_counter()
        for _ in range(batches):
            http.post(
                "/api/sessions/bench/events", json={"events": [event] * per_batch}
            ).raise_for_status()
        return batches * per_batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cancels", type=int, default=40)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/test")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    from tests.e2e.servers import site_database

    with site_database(Path(tempfile.mkdtemp()), "benchctl") as env:
        # The default per-socket limit (50 frames/s) would cap the one-by-one publisher.
        env["SESSIONS_APP_JSON"] = '{"MAX_FRAMES_PER_SECOND": 100000, "FRAME_BURST": 100000}'
        run_all(env, args)


def run_all(env: dict[str, str], args: argparse.Namespace) -> None:
    from tests.e2e.servers import DaphneProcess, api_key_for, session_with_token

    with DaphneProcess(env) as server:
        token = session_with_token(env, "bench", user="agent")
        key = api_key_for(env, user="agent")
        latencies = asyncio.run(cancel_latency(server.base, key, token, args.cancels))
        print(f"cancel latency ({len(latencies)} cancels): p50 {statistics.median(latencies) * 1000:.1f} ms, "
              f"p99 {pct(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")  # fmt: skip
        rest = rest_publish(server.base, key, args.batches, 100)
        ws_batched = asyncio.run(ws_publish(server.base, token, args.batches, 100))
        ws_single = asyncio.run(ws_publish(server.base, token, args.batches * 10, 1))
        print(f"REST batch publish (100 events per request): {rest:,.0f} events/s")
        print(f"WebSocket publish, 100 events per frame: {ws_batched:,.0f} events/s; "
              f"1 event per frame, one publisher: {ws_single:,.0f} events/s")  # fmt: skip


if __name__ == "__main__":
    main()
