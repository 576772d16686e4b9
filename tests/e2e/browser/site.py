"""The demo site as the browser tests need it: one daphne process that can be restarted on its
port, the demo agent as a separate process, and a TCP proxy in front for the browser."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import websockets

from tests.e2e.servers import (
    DAPHNE_CONNECT_TIMEOUT,
    ROOT,
    free_port,
    migrate,
    run_manage,
    site_env,
    wait_until_serving,
)


class Process:
    """A child process whose output goes to a file (a pipe nobody reads would block it)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name, self.args, self.env = name, args, env
        self.log = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class DemoSite:
    """Migrated SQLite file database, the demo login, daphne on a fixed loopback port."""

    def __init__(self, tmp: Path) -> None:
        self.env = site_env(tmp, DEBUG="1", LOG_LEVEL="WARNING")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "daphne", *DAPHNE_CONNECT_TIMEOUT]
        args += ["-b", "127.0.0.1", "-p", str(self.port)]
        self.server = Process("daphne", [*args, "config.asgi:application"], self.env)

    def setup(self) -> DemoSite:
        migrate(self.env)
        # As under `make run`: the demo ML project's diagnosis is queued for a job worker (none
        # runs here; tests/mlexec_app/test_demo_setup.py covers it). Run inline, as the tests'
        # servers run jobs, it trained the diagnosis in every site's set-up: 45 s of a loaded
        # CI machine, and three sites' set-ups past pytest's 120 s timeout.
        queued = {k: v for k, v in self.env.items() if k != "TASKS_BACKEND"}
        run_manage("demo_setup", env=queued)
        return self

    def start(self) -> None:
        self.server.start()
        assert self.server.proc is not None
        try:
            wait_until_serving(self.url + "/", self.server.proc, self.server.log)
        except BaseException:  # a start that fails or times out leaves no server behind
            self.server.stop()
            raise

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        """Stop the server process and start a new one on the same port."""
        self.stop()
        self.start()

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def cleanup(self) -> None:
        self.stop()
        for path in (self.server.log,):
            if path.exists() and not os.environ.get("KEEP_E2E_LOGS"):
                path.unlink()


LOG_SCRIPT = """
import json
from sessions_app import log
from sessions_app.models import Session
pk = Session.objects.get(name={name!r}).pk
events, after = [], 0
while rows := log.read(pk, after, 1000):
    events += [{{"seq": seq, **json.loads(body)}} for seq, body in rows]
    after = rows[-1][0]
print(json.dumps(events))
"""


def log_events(site: DemoSite, session: str) -> list[dict]:
    """Every entry of ``session`` as stored on the server, with its ``seq``."""
    return json.loads(site.manage("shell", "-c", LOG_SCRIPT.format(name=session)).splitlines()[-1])


def streamed_text(events: list[dict], message: str) -> str:
    """What the agent wrote into ``message``: its deltas, in log order."""
    return "".join(
        e["data"]["delta"]
        for e in events
        if e["type"] in ("TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CHUNK")
        and e.get("message") == message
        and isinstance(e.get("data", {}).get("delta"), str)
    )


TOKEN_SCRIPT = """
from django.contrib.auth import get_user_model
from sessions_app.access import mint_token
print(mint_token(get_user_model().objects.get(username={user!r})))
"""


def publish(site: DemoSite, session: str, events: list[dict], user: str = "demo") -> dict:
    """Publish ``events`` over the site's WebSocket, as an agent or a job would; return the ack."""
    token = site.manage("shell", "-c", TOKEN_SCRIPT.format(user=user)).strip().splitlines()[-1]
    url = site.url.replace("http://", "ws://") + f"/ws/sessions/?token={token}"

    async def send() -> dict:
        async with websockets.connect(url) as ws:
            frame = {"op": "publish", "id": 1, "session": session, "events": events}
            await ws.send(json.dumps(frame))
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("id") == 1:
                    return reply

    return in_thread(send)


def in_thread(make_coro) -> object:
    """Run a coroutine on a loop of its own (Playwright's sync API owns this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()
