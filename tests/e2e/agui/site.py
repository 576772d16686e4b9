"""A demo site with the real demo agent, and the npm clients of AG-UI and the AI SDK, for e2e.

Node packages come from package-lock.json (``npm ci``) when node_modules is missing. The site
runs on this pass's engines (SQLite file, or a scratch PostgreSQL database with Redis).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from tests.e2e.node import ensure_node_modules as npm_ci
from tests.e2e.servers import ROOT, daphne_server, manage_output, site_database

HERE = Path(__file__).resolve().parent
USER = "agent"
# Seconds per token of the demo agent: an answer takes about two seconds, time to act mid-run.
PACE = "0.03"

# The sessions and an API key of the agent's user for all its sessions, in one Django process.
SETUP = """
from django.contrib.auth import get_user_model
from sessions_app.keys import create_key
from sessions_app.models import Session
user, _ = get_user_model().objects.get_or_create(username={user!r})
for name in {names!r}:
    Session.objects.get_or_create(name=name, defaults={{"owner": user}})
print(create_key(user, "e2e agent", all_sessions=True)[1])
"""


def ensure_node_modules() -> None:
    npm_ci(HERE, "the AG-UI and AI SDK e2e tests")


@contextmanager
def agent_site(
    tmp_path: Path,
    label: str,
    sessions: list[str],
    workers: int = 1,
    settings: dict[str, object] | None = None,
) -> Iterator[dict[str, str]]:
    """A migrated site with ``sessions`` owned by the agent's user, the demo agent answering
    in them (connected to the first worker); yields the base URL (``base``; ``base2`` for a
    second worker process on the same database and channel layer) and an API key.
    ``settings``: SESSIONS_APP settings of the site's processes."""
    ensure_node_modules()
    with site_database(tmp_path, label) as env, ExitStack() as stack:
        if settings:
            env = {**env, "SESSIONS_APP_JSON": json.dumps(settings)}
        out = manage_output("shell", "-c", SETUP.format(user=USER, names=sessions), env=env)
        key = out.strip().splitlines()[-1]
        bases = [stack.enter_context(daphne_server(env)) for _ in range(workers)]
        agent = subprocess.Popen(
            [sys.executable, "manage.py", "demo_agent", "--url", bases[0], "--user", USER,
             "--pace", PACE],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            yield {"key": key, "base": bases[0], **{f"base{i + 1}": b for i, b in enumerate(bases)}}
        finally:
            agent.terminate()
            agent.wait(timeout=10)


def node(*args: str, timeout: float = 60) -> dict:
    """Run one of our node scripts; return the JSON line it printed."""
    done = subprocess.run(
        ["node", *args], cwd=HERE, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "SUPPRESS_TRANSFORMATION_WARNINGS": "true"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def snapshot(site: dict[str, str], session: str) -> dict:
    """The session's folded state, from the REST API: what the log holds."""
    reply = httpx.get(f"{site['base']}/api/sessions/{session}/snapshot",
                      headers={"Authorization": f"Bearer {site['key']}"})  # fmt: skip
    reply.raise_for_status()
    return reply.json()["state"]


def run_text(state: dict, run_id: str) -> str:
    return "".join(m["text"] for m in state["messages"] if m["run"] == run_id)


def run_status(state: dict, run_id: str) -> str:
    return next(r["status"] for r in state["runs"] if r["id"] == run_id)
