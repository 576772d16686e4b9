"""The demo agent: answers user messages in its user's sessions, honouring cancel and steer.

It is an ordinary client of the server (the SDK over WebSocket, with an API key), so it can
run anywhere and survives server restarts. Scripted answers with realistic token pacing by
default; an OpenAI-compatible endpoint when one is configured. A message starting with
``/team`` shows multi-agent work: an orchestrator starts two sub-agents that publish their own
progress into the session, under their own runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import AsyncIterator
from typing import Any

from sessions_app.agents.openai_compat import LLMSettings, stream_chat
from sessions_app.client import PublishError, Run, RunCancelled, Session, SessionsClient
from sessions_app.client.session import CAUGHT_UP

logger = logging.getLogger(__name__)

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
    def __init__(
        self, client: SessionsClient, llm: LLMSettings | None = None, pace: float = 0.03
    ) -> None:
        self.client = client
        self.llm = llm
        self.pace = pace
        self.watched: dict[str, asyncio.Task[None]] = {}

    async def serve(self, poll: float = 1.0) -> None:
        """Watch every session the key can see; new ones are picked up within ``poll`` seconds."""
        while True:
            try:
                for info in await self.client.list_sessions():
                    name = info["name"]
                    if name not in self.watched and not info["closed"]:
                        self.watched[name] = asyncio.create_task(self.watch(name))
            except Exception:
                logger.warning("could not list sessions; retrying", exc_info=True)
            await asyncio.sleep(poll)

    async def watch(self, name: str) -> None:
        session = await self.client.session(name, after="-1", inbox=True)
        roles: dict[str, str] = {}
        texts: dict[str, list[str]] = {}
        unanswered: str | None = None
        live = False
        async for event in session.events():
            kind, mid = event["type"], event.get("message")
            if kind == CAUGHT_UP:
                live = True
                if unanswered:  # a message sent before we were watching
                    await self.answer(session, "".join(texts.get(unanswered, [])))
                continue
            if kind == "TEXT_MESSAGE_START" and mid:
                roles[mid] = event.get("data", {}).get("role", "assistant")
            elif kind == "TEXT_MESSAGE_CONTENT" and mid:
                texts.setdefault(mid, []).append(event["data"]["delta"])
            elif kind == "RUN_STARTED":
                unanswered = None
            elif kind == "TEXT_MESSAGE_END" and roles.get(mid or "") == "user":
                if live:
                    await self.answer(session, "".join(texts.get(mid or "", [])))
                else:
                    unanswered = mid

    async def answer(self, session: Session, question: str) -> None:
        try:
            if question.startswith("/team"):
                await self.team(session, question.removeprefix("/team").strip() or "your question")
            else:
                async with session.run(agent="assistant") as run:
                    await self.stream(run, self.words(session, question))
        except (PublishError, RunCancelled) as exc:
            logger.info("run ended early: %s", exc)

    async def words(self, session: Session, question: str) -> AsyncIterator[str]:
        if self.llm is not None:
            async for delta in stream_chat(self.llm, [{"role": "user", "content": question}]):
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

    async def team(self, session: Session, topic: str) -> None:
        async with session.run(agent="orchestrator") as boss:
            await self.stream(
                boss, _aiter(tokens(f"Planning: I asked a researcher and a critic about {topic}. "))
            )
            await boss.end_message()

            async def helper(role: str) -> None:
                async with session.run(agent=role, parent=boss) as child:
                    await self.stream(
                        child, _aiter(tokens(TEAM[role].format(topic=topic))), also=boss
                    )

            await asyncio.gather(helper("researcher"), helper("critic"))
            await self.stream(
                boss, _aiter(tokens("Both are done: start small and read the sources."))
            )


async def _aiter(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def run_agent(
    base_url: str, api_key: str, llm: LLMSettings | None = None, pace: float = 0.03
) -> Any:
    async with SessionsClient(base_url, api_key=api_key, label="demo agent") as client:
        await DemoAgent(client, llm, pace).serve()
