"""Agents the runtime's e2e tests serve from worker processes (``run_agents tests.e2e.runtime_agents``)."""

from __future__ import annotations

import asyncio
import os

from sessions_app.agents import agent

PACE = float(os.environ.get("RUNTIME_AGENT_PACE", "0.01"))


@agent("echo")
async def echo(turn, run):
    """Answers with the question, word by word; follows steers; slow enough to be cut."""
    for word in f"you said: {turn.text}".split():
        steer = run.next_steer()
        if steer:
            await run.text(f"[steered: {steer}] ")
        await run.text(word + " ")
        await asyncio.sleep(PACE)


@agent("noop")
async def noop(turn, run):
    """Answers at once (the dispatch benchmark's and the many-turns test's handler)."""
    await run.text("ok")
