"""TEMPORARY stand-in for ``manage.py demo_agent`` until it lands (then the tests use the real one).

Answers each user message in every session of ``--user`` with a run streaming a known text;
honours CANCEL (CONTROL_ACK, then RUN_FINISHED cancelled) and ``/team`` (two sub-agent runs).
Run: ``python -m tests.e2e.browser.fake_agent --url ws://127.0.0.1:8000 --user demo``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os

import websockets

WORDS = [f"word{i:03d}" for i in range(120)]
counter = itertools.count()


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def token_and_sessions(username: str) -> tuple[str, list[str]]:
    from django.contrib.auth import get_user_model

    from sessions_app.access import mint_token, visible_to

    user = get_user_model().objects.get(username=username)
    return mint_token(user), list(visible_to(user).values_list("name", flat=True))


class Agent:
    def __init__(self, ws) -> None:
        self.ws = ws
        self.cancelled: set[str] = set()
        self.active: set[str] = set()
        self.ids = itertools.count()

    async def publish(self, session: str, *events: dict) -> None:
        await self.ws.send(
            json.dumps(
                {"op": "publish", "id": next(self.ids), "session": session, "events": list(events)}
            )
        )

    async def stream(self, session: str, run: str, parent: str | None = None) -> None:
        data = {"parentRunId": parent} if parent else {}
        self.active.add(run)
        await self.publish(session, {"type": "RUN_STARTED", "run": run, "data": data})
        message = f"{run}-m"
        await self.publish(
            session,
            {
                "type": "TEXT_MESSAGE_START",
                "run": run,
                "message": message,
                "data": {"role": "assistant"},
            },
        )
        for word in WORDS:
            if run in self.cancelled:
                await self.publish(
                    session,
                    {"type": "CONTROL_ACK", "run": run, "data": {"action": "cancel"}},
                    {"type": "RUN_FINISHED", "run": run, "data": {"outcome": "cancelled"}},
                )
                return
            await self.publish(
                session,
                {
                    "type": "TEXT_MESSAGE_CONTENT",
                    "run": run,
                    "message": message,
                    "data": {"delta": word + " "},
                },
            )
            await asyncio.sleep(0.03)
        await self.publish(session, {"type": "TEXT_MESSAGE_END", "run": run, "message": message})
        await self.publish(session, {"type": "RUN_FINISHED", "run": run})

    async def answer(self, session: str, text: str) -> None:
        run = f"run-{next(counter)}"
        if not text.startswith("/team "):
            await self.stream(session, run)
            return
        await self.publish(session, {"type": "RUN_STARTED", "run": run, "agent": "orchestrator"})
        await asyncio.gather(*(self.stream(session, f"{run}-{k}", parent=run) for k in ("a", "b")))
        await self.publish(session, {"type": "RUN_FINISHED", "run": run})

    def on_event(self, session: str, event: dict, texts: dict) -> None:
        kind = event["type"]
        if kind == "TEXT_MESSAGE_START" and event.get("data", {}).get("role") == "user":
            texts[event["message"]] = ""
        elif kind == "TEXT_MESSAGE_CONTENT" and event["message"] in texts:
            texts[event["message"]] += event["data"]["delta"]
        elif kind == "TEXT_MESSAGE_END" and event["message"] in texts:
            asyncio.ensure_future(self.answer(session, texts.pop(event["message"])))
        elif kind == "CANCEL":
            self.cancelled.update([event["run"]] if event.get("run") else self.active)


async def main(url: str, username: str) -> None:
    from asgiref.sync import sync_to_async

    subscribed: set[str] = set()
    token, _ = await sync_to_async(token_and_sessions)(username)
    async with websockets.connect(f"{url}/ws/sessions/?token={token}&label=agent") as ws:
        agent = Agent(ws)
        texts: dict = {}

        async def watch() -> None:
            while True:
                _, names = await sync_to_async(token_and_sessions)(username)
                for name in set(names) - subscribed:
                    subscribed.add(name)
                    await ws.send(json.dumps({"op": "subscribe", "session": name, "after": "-1"}))
                await asyncio.sleep(0.3)

        watcher = asyncio.ensure_future(watch())
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "events":
                for event in frame["events"]:
                    agent.on_event(frame["session"], event, texts)
        watcher.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--user", default="demo")
    args = parser.parse_args()
    setup_django()
    asyncio.run(main(args.url, args.user))
