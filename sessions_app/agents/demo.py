"""The demo agent: answers the turns of the ``assistant`` agent, honouring cancel and steer.

It runs in an agent worker (``python manage.py demo_agent``, or ``run_agents`` with these
handlers), an ordinary client of the site, so it can run anywhere and survives server
restarts. Scripted answers with realistic token pacing by default; an OpenAI-compatible
endpoint when one is configured. A message starting with ``/team`` shows multi-agent work: the
answer's run plans, and two sub-agents publish their own progress into the session under their
own runs (children of the answer's run).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator

from sessions_app.agents.base import Handler, Turn
from sessions_app.agents.openai_compat import LLMSettings, stream_chat
from sessions_app.client import Run, RunCancelled

ANSWERS = [
    "Durable sessions keep every token of this answer in an ordered log on the server. "
    "If your network drops, your browser reconnects and resumes from the last offset it saw, "
    "so nothing is lost and nothing is repeated. Open this chat on a second device and you "
    "will see the same words arrive at the same time.",
    "Here is how I would approach it. First, write down what success looks like and how you "
    "will measure it. Second, build the simplest thing that could work and look at where it "
    "fails. Third, fix the biggest failure first, and measure again before moving on.",
    "Stopping is different from disconnecting: pressing stop sends a cancel on the session "
    "log, which I acknowledge before I stop writing. Closing your laptop does nothing of the "
    "kind; I keep writing, and you catch up when you come back.",
]
STEERED = (
    "Understood, changing course: {steer}. In short, the answer stays the same, said differently."
)
TEAM = {
    "researcher": "I looked for sources on {topic} and found three worth reading.",
    "critic": "I checked the plan for {topic}; the main risk is scope, so start small.",
}


def tokens(text: str) -> list[str]:
    """Split into word-sized tokens that keep their spacing (as a model's tokens do)."""
    return re.findall(r"\S+\s*", text)


class DemoAgent:
    """The demo's handler for the ``assistant`` agent (``run_agents`` calls ``answer``)."""

    def __init__(self, llm: LLMSettings | None = None, pace: float = 0.03) -> None:
        self.llm = llm
        self.pace = pace

    async def answer(self, turn: Turn, run: Run) -> None:
        question = turn.text
        started = time.monotonic()
        counted = _Counted(self.words(turn))
        if question.startswith("/team"):
            await self.team(run, question.removeprefix("/team").strip() or "your question")
        else:
            await self.stream(run, counted)
        await run.usage(
            model=self.llm.model if self.llm else "scripted",
            input_tokens=sum(len(tokens(m["content"])) for m in turn.messages),
            output_tokens=counted.count,
            cost=0.0,
            latency_ms=round((time.monotonic() - started) * 1000),
        )

    async def words(self, turn: Turn) -> AsyncIterator[str]:
        if self.llm is not None:
            async for delta in stream_chat(self.llm, turn.messages):
                yield delta
            return
        for token in tokens(random.choice(ANSWERS)):
            yield token

    async def stream(self, run: Run, words: AsyncIterator[str], also: Run | None = None) -> None:
        async for token in words:
            if also is not None and also.cancelled.is_set():
                raise RunCancelled(run.id)
            steer = run.next_steer()
            if steer:
                await run.text(f"\n\n[{steer}] ")
                words = _aiter(tokens(STEERED.format(steer=steer)))
                await self.stream(run, words, also)
                return
            await run.text(token)
            await asyncio.sleep(self.pace * random.uniform(0.6, 1.4))

    async def team(self, boss: Run, topic: str) -> None:
        """An orchestrator: it plans, two sub-agents work in their own runs, it concludes."""
        await self.stream(
            boss, _aiter(tokens(f"Planning: I asked a researcher and a critic about {topic}. "))
        )
        await boss.end_message()

        async def helper(role: str) -> None:
            async with boss.session.run(agent=role, parent=boss) as child:
                await self.stream(child, _aiter(tokens(TEAM[role].format(topic=topic))), also=boss)

        await asyncio.gather(helper("researcher"), helper("critic"))
        await self.stream(boss, _aiter(tokens("Both are done: start small and read the sources.")))


class _Counted:
    """The tokens of an answer, counted as they are streamed (for its usage)."""

    def __init__(self, words: AsyncIterator[str]) -> None:
        self.words = words
        self.count = 0

    def __aiter__(self) -> _Counted:
        return self

    async def __anext__(self) -> str:
        token = await self.words.__anext__()
        self.count += 1
        return token


async def _aiter(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


def handlers(llm: LLMSettings | None = None, pace: float = 0.03) -> dict[str, Handler]:
    """The demo's agents by name, for a ``Worker``."""
    return {"assistant": DemoAgent(llm, pace).answer}
