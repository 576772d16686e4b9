from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connections

from sessions_app import dbexec
from sessions_app.access import mint_token
from sessions_app.models import Membership, Session
from sessions_app.routing import websocket_application


@pytest.fixture(scope="session", autouse=True)
def _close_log_threads(django_db_setup, django_db_blocker):
    # The log keeps connections open in its own threads, and asgiref's thread for
    # thread-sensitive calls may hold one too; close them before the test database is
    # dropped (PostgreSQL refuses to drop a database in use).
    yield
    dbexec.shutdown()
    asyncio.run(sync_to_async(connections.close_all)())


@pytest.fixture(autouse=True)
def _fresh_log_connections():
    yield
    dbexec.shutdown()


@pytest.fixture
def make_user(django_user_model):
    def make(username="alice"):
        return django_user_model.objects.create_user(username=username, password="pw")

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def session(alice):
    return Session.objects.create(name="chat-1", owner=alice, title="Chat")


def add_member(session, user):
    Membership.objects.create(session=session, user=user)


class Client:
    """A WebSocket client speaking our frames, over the real ASGI stack (auth, origin, routing)."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.ws = communicator
        self.counter = 0

    async def send(self, frame) -> None:
        await self.ws.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = 5) -> dict:
        return json.loads(await self.ws.receive_from(timeout=timeout))

    async def recv_type(self, *types: str, timeout: float = 5) -> dict:
        """Next frame of one of ``types``, skipping presence chatter."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] in types:
                return frame
            if frame["type"] not in ("presence", "hello"):
                raise AssertionError(f"expected {types}, got {frame}")

    async def request(self, op: str, **fields) -> dict:
        self.counter += 1
        frame_id = f"c{self.counter}"
        await self.send({"op": op, "id": frame_id, **fields})
        while True:
            frame = await self.recv()
            if frame.get("id") == frame_id and frame["type"] != "events":
                return frame

    async def publish(self, session: str, events, **extra) -> dict:
        return await self.request("publish", session=session, events=events, **extra)

    async def subscribe(self, session: str, after="-1") -> tuple[list[dict], dict]:
        """Subscribe; return the replayed events and the caught_up (or error) frame."""
        self.counter += 1
        frame_id = f"c{self.counter}"
        await self.send({"op": "subscribe", "id": frame_id, "session": session, "after": after})
        events = []
        while True:
            frame = await self.recv()
            if frame["type"] == "events":
                events.extend(frame["events"])
            elif frame.get("id") == frame_id and frame["type"] in (
                "caught_up",
                "error",
                "snapshot",
            ):
                if frame["type"] == "snapshot":
                    events.append(frame)
                    continue
                return events, frame

    async def events(self, count: int, timeout: float = 5) -> list[dict]:
        got = []
        while len(got) < count:
            frame = await self.recv_type("events", timeout=timeout)
            got.extend(frame["events"])
        return got

    async def nothing_more(self, timeout: float = 0.3) -> bool:
        try:
            return await self.ws.receive_nothing(timeout=timeout)
        except asyncio.CancelledError:
            return True


@asynccontextmanager
async def connect(user=None, *, token: str | None = None, headers=None, path="/ws/sessions/"):
    if user is not None and token is None:
        token = await database_sync_to_async(mint_token)(user)
    query = f"?token={token}" if token else ""
    communicator = WebsocketCommunicator(
        websocket_application(), path + query, headers=headers or []
    )
    # The first connect of a process sets up the channel layer and database threads: on a
    # loaded CI machine (the single-app run at the lowest priority) that took more than 10 s.
    connected, code = await communicator.connect(timeout=60)
    client = Client(communicator)
    client.connected, client.close_code = connected, code
    try:
        yield client
    finally:
        try:
            await communicator.disconnect()
        except (TimeoutError, asyncio.CancelledError):
            pass  # the app already stopped; the test's own failure (if any) is what matters


def text(event_type="TEXT_MESSAGE_CONTENT", delta="x", message="m1", run="r1"):
    return {"type": event_type, "message": message, "run": run, "data": {"delta": delta}}


@pytest.fixture
def ws():
    return connect


@pytest.fixture
def long_poll_waiting(monkeypatch):
    """Set once a long poll waits for the next commit (it has read and found nothing): what a
    test does next happens during the poll, however slowly a loaded machine got it there."""
    from sessions_app import log, revocation

    waiting = asyncio.Event()

    def signalling(real):
        async def wait(self, seconds):
            waiting.set()
            return await real(self, seconds)

        return wait

    # REST's long poll waits on the log's Waiter, the other doors on revocation's subclass.
    for waiter in (log.Waiter, revocation.Waiter):
        monkeypatch.setattr(waiter, "wait", signalling(waiter.wait))
    return waiting


@pytest.fixture
def get_user_model_fixture():
    return get_user_model()
