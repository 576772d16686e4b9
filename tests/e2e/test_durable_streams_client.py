"""The protocol's own client follows a live AI session through our server.

A user's session gets a signed token; an agent (a script here, publishing over our WebSocket
door with realistic pacing) writes a run into it while ``@durable-streams/client`` from npm
follows the session over HTTP, once with long-poll and once with SSE. Each follower must end
with every event exactly once, in order: the history it caught up on, then the live run.
"""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading

import pytest
import websockets

from tests.e2e.durable_streams.server import HERE, ds_server, ensure_node_modules

# Protocol clients against the doors: run once, on the production engines (second pass).
pytestmark = [pytest.mark.e2e, pytest.mark.real_engines, pytest.mark.timeout(300)]

SESSION = "ai-chat"
SETUP = f"""
from django.contrib.auth import get_user_model
from sessions_app.access import mint_token
from sessions_app.models import Session
user = get_user_model().objects.create_user("alice", password="pw")
Session.objects.create(name="{SESSION}", owner=user, title="Chat")
print(mint_token(user, ["{SESSION}"]))
"""


def history() -> list[dict]:
    return [
        {"type": "TEXT_MESSAGE_START", "message": "u1", "data": {"role": "user"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": "u1", "data": {"delta": "Tell me a story"}},
        {"type": "TEXT_MESSAGE_END", "message": "u1"},
    ]


def agent_run() -> list[dict]:
    words = "Once upon a time a durable stream carried every token exactly once .".split()
    events = [
        {"type": "RUN_STARTED", "run": "r1", "agent": "writer"},
        {"type": "TEXT_MESSAGE_START", "run": "r1", "message": "m1", "data": {"role": "assistant"}},
    ]
    events += [
        {"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "message": "m1", "data": {"delta": w + " "}}
        for w in words * 3
    ]
    events += [
        {"type": "TEXT_MESSAGE_END", "run": "r1", "message": "m1"},
        {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": "success"}},
    ]
    return events


async def publish(ws_url: str, events: list[dict], pause: float) -> None:
    """An agent: one event per frame, acknowledged, with a token-like pace."""
    async with websockets.connect(ws_url) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        for index, event in enumerate(events):
            frame = {"op": "publish", "id": str(index), "session": SESSION, "events": [event]}
            await ws.send(json.dumps(frame))
            while (reply := json.loads(await ws.recv())).get("id") != str(index):
                pass
            assert reply["type"] == "ack", reply
            await asyncio.sleep(pause)


class Follower:
    """``follow_session.mjs`` in a subprocess; its output lines arrive on a queue."""

    def __init__(self, url: str, token: str, mode: str) -> None:
        self.mode = mode
        self.proc = subprocess.Popen(
            ["node", "follow_session.mjs", url, token, mode],
            cwd=HERE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("eof")

    def until(self, word: str, timeout: float = 30) -> list[dict]:
        received = []
        while (line := self.lines.get(timeout=timeout)) != word:
            assert line not in ("eof", "timeout"), f"{self.mode} follower stopped: {line}"
            if line.startswith("{"):
                received.append(json.loads(line))
        return received


def test_the_typescript_client_follows_a_live_session_exactly_once_in_order(tmp_path):
    ensure_node_modules()
    with ds_server(tmp_path) as (base, env):
        setup = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SETUP],
            cwd=HERE.parents[2],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        token = setup.stdout.strip().splitlines()[-1]
        ws_url = base.replace("http", "ws") + f"/ws/sessions/?token={token}"
        asyncio.run(publish(ws_url, history(), pause=0))
        url = f"{base}/v1/stream/{SESSION}"
        followers = [Follower(url, token, mode) for mode in ("long-poll", "sse")]
        caught_up = [follower.until("ready") for follower in followers]
        asyncio.run(publish(ws_url, agent_run(), pause=0.03))
        live = [follower.until("done") for follower in followers]
        for follower in followers:
            follower.proc.wait(timeout=10)
    published = history() + agent_run()
    for before, after in zip(caught_up, live, strict=True):
        received = [line["event"] for line in before + after]
        assert [{k: v for k, v in e.items() if k != "time"} for e in received] == published
        assert all(isinstance(e["time"], int) for e in received)  # stored by the log
        assert len(after) == len(agent_run())  # the run arrived live, not in the catch-up
