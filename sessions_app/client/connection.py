"""One WebSocket to the server, kept open: reconnects, resubscribes and re-sends by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
import websockets

from sessions_app.client.errors import ConnectionClosed, PublishError
from sessions_app.client.session import Session

logger = logging.getLogger("sessions_app.client")
# How long an `unavailable` answer (the database restarting) is retried, whatever max_backoff
# spaces the attempts at; and how many times a frame refused for the socket's frame rate is.
UNAVAILABLE_SECONDS = 60.0
RATE_RETRIES = 12


class SessionsClient:
    """A connection for agents: ``async with SessionsClient(base_url, api_key=…) as client``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        token: str | None = None,
        coalesce_seconds: float = 0.03,
        max_backoff: float = 5.0,
        heartbeat_seconds: float = 15.0,
        label: str = "",
        max_event_bytes: int = 16 * 1024,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.token = token
        self.coalesce_seconds = coalesce_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.label = label
        self.max_backoff = max_backoff
        # Text of one TEXT_MESSAGE_CONTENT event, in bytes of JSON: longer text (e.g. what
        # piled up while the server was unreachable) is split over several events, well under
        # the server's MAX_EVENT_BYTES (64 KiB by default).
        self.max_event_bytes = max_event_bytes
        self.producer_prefix = "py-" + uuid.uuid4().hex[:12]
        self.sessions: dict[str, Session] = {}
        self._ws: Any = None
        self._connected = asyncio.Event()
        self._pending: dict[int, tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = {}
        self._ids = 0
        # Each connection gets a number; a request or subscription remembers the connection it
        # was sent on, so it goes out once per connection (by the resume or by its caller).
        self._generation = 0
        self._sent_on: dict[int, int] = {}
        self._subscribing: dict[int, Session] = {}  # subscribe frame id -> its session
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self.reconnects = 0

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> SessionsClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        self._runner = asyncio.create_task(self._run())
        await asyncio.wait_for(self._connected.wait(), 30)

    async def close(self) -> None:
        """Publish what the runs still buffer, then close. A publish that was refused or could
        not be sent is raised here, once the client is closed: nothing is dropped unsaid."""
        failed: list[Exception] = []
        if not self._closing:  # before closing: a closing client sends nothing
            for session in list(self.sessions.values()):
                failed += await session.flush_all()
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        # Nothing answers from here on: whoever waits is told so.
        for _, future in list(self._pending.values()):
            if not future.done():
                future.set_exception(ConnectionClosed("the client was closed"))
        for session in self.sessions.values():
            if not session.caught_up.is_set():
                session.refused({"type": "error", "code": "closed", "message": "client closed"})
        if failed:
            logger.warning("closing: %d run(s) could not publish their last text", len(failed))
            raise failed[0]

    @property
    def ws_url(self) -> str:
        url = (
            self.base_url.replace("https://", "wss://").replace("http://", "ws://")
            + "/ws/sessions/"
        )
        query = {
            key: value for key, value in (("token", self.token), ("label", self.label)) if value
        }
        return url + ("?" + urlencode(query) if query else "")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def _run(self) -> None:
        backoff = 0.2
        while not self._closing:
            try:
                async with websockets.connect(
                    self.ws_url, additional_headers=self._headers(), max_size=2**24, open_timeout=10
                ) as ws:
                    hello = json.loads(await ws.recv())
                    if hello.get("type") != "hello":
                        raise ConnectionClosed(f"refused: {hello}")
                    self._generation += 1
                    self._subscribing.clear()
                    self._ws = ws
                    await self._resume()
                    backoff = 0.2
                    self._connected.set()
                    async for raw in ws:
                        await self._dispatch(json.loads(raw))
            except (TimeoutError, OSError, websockets.WebSocketException, ConnectionClosed) as exc:
                logger.info("connection lost (%s); reconnecting", exc)
            self._ws = None
            self._connected.clear()
            if self._closing:
                return
            self.reconnects += 1
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.max_backoff)

    async def _resume(self) -> None:
        # Resubscribe from the last offset seen, then send what was never acknowledged, in the
        # order it was asked for: writing frames carry their producer seq, so a re-sent one
        # that had landed is answered as a duplicate. Requests made meanwhile are taken too;
        # from the moment the connection counts as up, callers send their own frames.
        generation = self._generation
        while True:
            sessions = [
                s for s in self.sessions.values() if s.following and s.sent_on != generation
            ]
            unsent = sorted(i for i in self._pending if self._sent_on.get(i) != generation)
            if not sessions and not unsent:
                return
            for session in sessions:
                await self._subscribe(session)
            for request_id in unsent:
                if request_id in self._pending:
                    self._sent_on[request_id] = generation
                    await self._ws.send(json.dumps(self._pending[request_id][0]))

    async def _subscribe(self, session: Session) -> None:
        self._ids += 1
        self._subscribing[self._ids] = session
        session.sent_on = self._generation
        await self._ws.send(json.dumps({**session.subscribe_frame(), "id": self._ids}))

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        frame_id = frame.get("id")
        if isinstance(frame_id, int):
            pending = self._pending.pop(frame_id, None)
            if pending is not None:
                self._sent_on.pop(frame_id, None)
                if not pending[1].done():
                    pending[1].set_result(frame)
                return
            subscribing = self._subscribing.get(frame_id)
            if subscribing is not None and frame.get("type") in ("caught_up", "error"):
                del self._subscribing[frame_id]
                if frame["type"] == "error":
                    subscribing.refused(frame)
                    return
        session = self.sessions.get(frame.get("session", ""))
        if session is not None:
            await session.receive(frame)

    # --- requests ------------------------------------------------------------------------

    async def request(
        self,
        frame: dict[str, Any],
        *,
        retry: bool = True,
        _attempt: int = 0,
        _since: float | None = None,
    ) -> dict[str, Any]:
        """Send a frame and wait for its answer, across reconnects and database outages
        (``retry=False``: an ``unavailable`` or rate refusal is raised at once)."""
        clock = asyncio.get_running_loop().time
        if self._closing:
            raise ConnectionClosed("the client is closed")
        self._ids += 1
        request_id = self._ids
        frame = {**frame, "id": request_id}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (frame, future)
        try:
            # While disconnected the frame just waits: the resume sends it (once).
            if self._connected.is_set() and self._ws is not None:
                self._sent_on[request_id] = self._generation
                with contextlib.suppress(Exception):  # if the socket just died, _resume re-sends
                    await self._ws.send(json.dumps(frame))
            reply = await future
        finally:
            self._pending.pop(request_id, None)
            self._sent_on.pop(request_id, None)
        if retry and reply.get("type") == "error" and reply.get("code") == "unavailable":
            # The database is down for a moment: send the same frame (same producer seq) again,
            # for UNAVAILABLE_SECONDS from the first refusal (a restart takes what it takes).
            since = clock() if _since is None else _since
            if clock() - since < UNAVAILABLE_SECONDS:
                await asyncio.sleep(min(self.max_backoff, 0.2 * 2 ** min(_attempt, 10)))
                return await self.request(frame, _attempt=_attempt + 1, _since=since)
        if reply.get("type") == "error" and reply.get("limit") == "frames_per_second":
            # Over the socket's frame rate: the frame was refused unread, so it is sent again
            # (same producer seq) once the server's token bucket has refilled a little.
            if retry and _attempt < RATE_RETRIES:
                await asyncio.sleep(min(self.max_backoff, 0.05 * 2**_attempt))
                return await self.request(frame, _attempt=_attempt + 1)
        if reply.get("type") == "error":
            raise PublishError(reply)
        return reply

    async def session(self, name: str, after: str = "now", *, inbox: bool = False) -> Session:
        """Follow a session from ``after`` ("now", "-1" or an offset); returns when caught up.

        With ``inbox=True`` every event from ``after`` on is kept for ``session.events()``.
        """

        if name not in self.sessions:
            self.sessions[name] = Session(self, name, after, inbox)
        return await self.follow(self.sessions[name])

    def writer(self, name: str, after: str = "now") -> Session:
        """A session to publish into without following it: no subscription, no round trip.

        ``follow`` subscribes it later (from ``after``: nothing sent meanwhile is missed), when
        its events are wanted (e.g. a cancel or a steer for a run that takes a while).
        """
        session = self.sessions.get(name)
        if session is None:
            session = self.sessions[name] = Session(self, name, after)
            session.following = False
        return session

    async def follow(self, session: Session) -> Session:
        """Subscribe ``session`` if it is not yet followed; returns when caught up."""
        name = session.name
        session.following = True
        if session.sent_on == 0 and self._connected.is_set() and self._ws is not None:
            with contextlib.suppress(Exception):  # if the socket just died, _resume does
                await self._subscribe(session)
        await session.caught_up.wait()
        if session.error is not None:
            # Refused (no such session, too many subscriptions, ...): raised with its code.
            if self.sessions.get(name) is session:
                del self.sessions[name]
            raise PublishError(session.error)
        return session

    async def leave(self, name: str) -> None:
        """Stop following a session (frees one of the connection's subscriptions)."""
        session = self.sessions.pop(name, None)
        if session is None or not session.following:
            return
        with contextlib.suppress(PublishError, ConnectionClosed):
            await self.request({"op": "unsubscribe", "session": name}, retry=False)

    # --- REST helpers ---------------------------------------------------------------------

    async def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers(), timeout=30
        ) as http:
            reply = await http.request(method, "/api/sessions" + path, **kwargs)
            reply.raise_for_status()
            return reply.json()

    async def list_sessions(self) -> list[dict[str, Any]]:
        return list((await self.rest("GET", "/", params={"limit": 500}))["items"])
