"""An agent worker: claims turns, answers each with its handler, keeps its claims alive.

Importable without Django: a worker is an ordinary client of the site (the SDK's WebSocket for
claims, answers, renewals and hand-backs: the frames of the REST door ``/api/sessions/turns/``),
so it runs on any machine with an API key::

    async with SessionsClient(url, api_key=key) as client:
        await Worker(client, registry.handlers, concurrency=8).serve()

Several workers (processes, machines) share the turns: each turn is claimed by one of them.
A claim holds a lease that ``renew`` pushes ahead every quarter of its length; a worker that
dies stops renewing, and after the lease the turn is offered again (its run is ended
``agent_lost`` first). On ``stop`` the worker claims nothing more, lets its running turns
finish for ``drain_seconds``, then hands the rest back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
import zlib
from collections.abc import Mapping
from typing import Any

from sessions_app.agents.base import Handler, Turn
from sessions_app.client import ConnectionClosed, PublishError, Run, RunCancelled, SessionsClient
from sessions_app.domain.turns import CLAIM_MOST

logger = logging.getLogger("sessions_app.agents.worker")
# A claim refused with these codes is refused again whatever the wait: the worker stops.
REFUSED_FOR_GOOD = frozenset({"bad_request", "forbidden"})
STOP_CLAIM_SECONDS = 10.0  # a stopped claim answers at once; a server that does not is left


class Worker:
    """Serves the turns of ``handlers`` (agent name -> handler) on ``client``'s site."""

    def __init__(
        self,
        client: SessionsClient,
        handlers: Mapping[str, Handler],
        *,
        concurrency: int = 4,
        name: str | None = None,
        wait: float = 20.0,
        drain_seconds: float = 30.0,
        max_backoff: float = 5.0,
        turns_per_socket: int = 4,
    ) -> None:
        if not handlers:
            raise ValueError("a worker needs at least one handler (see sessions_app.agents)")
        self.client = client
        self.handlers = dict(handlers)
        self.concurrency = max(1, concurrency)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.wait = wait
        self.drain_seconds = drain_seconds
        self.max_backoff = max_backoff
        self.active: dict[int, asyncio.Task[None]] = {}
        self.turns: dict[int, Turn] = {}  # the claimed turns being answered, by id
        self.answered = 0  # turns this worker's handlers finished (for tests and logs)
        self.lease = 30.0
        # A socket's frames are served one after another (a subscribe waits for the socket's
        # publishes to commit): a worker answering many turns at once spreads them over
        # several sockets, ``client`` and copies of it, each session always on the same one.
        self.sockets = max(1, -(-self.concurrency // max(1, turns_per_socket)))
        self.clients: list[SessionsClient] = [client]

    # --- the loop ------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Claim and answer turns until ``stop`` is set, then drain."""
        stop = stop or asyncio.Event()
        renewer = asyncio.create_task(self._renew_forever())
        try:
            for _ in range(self.sockets - 1):
                extra = _copy(self.client)
                await extra.connect()
                self.clients.append(extra)
            await self._claim_until(stop)
        finally:
            await self._drain()
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            for extra in self.clients[1:]:
                with contextlib.suppress(Exception):
                    await extra.close()
            self.clients = [self.client]

    async def _claim_until(self, stop: asyncio.Event) -> None:
        failures = 0
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if len(self.active) >= self.concurrency:
                    await asyncio.wait(
                        [stopping, *self.active.values()], return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                free = min(CLAIM_MOST, self.concurrency - len(self.active))
                claim = asyncio.create_task(self._claim(free))
                await asyncio.wait([claim, stopping], return_when=asyncio.FIRST_COMPLETED)
                if not claim.done():  # stopping: what the claim took yet is handed back
                    await self._stop_claim(claim)
                    break
                try:
                    turns = claim.result()
                    failures = 0
                except (PublishError, ConnectionClosed, TimeoutError, ValueError) as exc:
                    if isinstance(exc, PublishError) and exc.code in REFUSED_FOR_GOOD:
                        # Asking again would be refused again: the worker stops, loudly,
                        # instead of retrying forever with nothing served.
                        raise
                    failures += 1
                    delay = min(self.max_backoff, 0.2 * 2**failures)
                    logger.warning("claiming turns failed (%s); again in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                for turn in turns:
                    self.turns[turn.id] = turn
                    self.active[turn.id] = asyncio.create_task(self._answer(turn))
        finally:
            stopping.cancel()

    async def _claim(self, limit: int) -> list[Turn]:
        # Over the socket, not HTTP: no request and key check per claim on the server (a third
        # of its CPU a claim in issue #20's dispatch profile).
        frame = {
            "op": "claim",
            "agents": sorted(self.handlers),
            "worker": self.name,
            "limit": limit,
            "wait": self.wait,
        }
        reply = await asyncio.wait_for(self.client.request(frame), self.wait + 30)
        turns = []
        for raw in reply["turns"]:
            self.lease = float(raw.get("lease_seconds") or self.lease)
            turns.append(_turn(raw))
        return turns

    async def _stop_claim(self, claim: asyncio.Task[list[Turn]]) -> None:
        """End the waiting claim on the server (it answers at once with what it took) and hand
        those turns back: a turn claimed for a worker that stops is offered again now, not
        after its lease."""
        with contextlib.suppress(PublishError, ConnectionClosed):
            await asyncio.wait_for(
                self.client.request({"op": "stop_claim"}, retry=False), STOP_CLAIM_SECONDS
            )
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            for turn in await asyncio.wait_for(claim, STOP_CLAIM_SECONDS):
                await self._release(turn.id)
        claim.cancel()

    # --- one turn ------------------------------------------------------------------------

    def _client_for(self, session: str) -> SessionsClient:
        return self.clients[zlib.crc32(session.encode()) % len(self.clients)]

    async def _answer(self, turn: Turn) -> None:
        handler = self.handlers[turn.agent]
        client = self._client_for(turn.session)
        try:
            session = client.writer(turn.session, after=turn.message_offset)
            run = session.run(agent=turn.agent, run_id=turn.run_id, turn=turn.id, lazy=True)
            async with run:
                await _handle(handler, turn, run)
            self.answered += 1
        except RunCancelled:
            self.answered += 1
        except PublishError as exc:  # e.g. turn_fenced: another worker has the turn now
            logger.warning("turn %s: the answer was refused: %s", turn.id, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The run ended with RUN_ERROR (async with run did it): the turn is failed, and
            # the user sees why. The worker goes on with other turns.
            logger.exception("turn %s: the handler of %r failed", turn.id, turn.agent)
        finally:
            self.active.pop(turn.id, None)
            self.turns.pop(turn.id, None)
            if not any(t.session == turn.session for t in self.turns.values()):
                with contextlib.suppress(Exception):
                    await client.leave(turn.session)

    # --- leases --------------------------------------------------------------------------

    async def _renew_forever(self) -> None:
        last = asyncio.get_running_loop().time()
        while True:
            # Short naps: the lease's length is learnt from the first claim.
            await asyncio.sleep(min(0.25, self.lease / 4))
            now = asyncio.get_running_loop().time()
            if now - last < self.lease / 4:
                continue
            last = now
            if self.active:
                try:
                    await self._renew()
                except (PublishError, ConnectionClosed, TimeoutError) as exc:
                    logger.warning("renewing the leases failed: %s", exc)

    async def _renew(self) -> None:
        # Over the claiming socket (a frame, not a request that looks the key up each time);
        # one that waits out a reconnect longer than the lease renews nothing anyway.
        ids = sorted(self.active)
        frame = {"op": "renew", "worker": self.name, "turns": ids}
        reply = await asyncio.wait_for(self.client.request(frame, retry=False), self.lease)
        held = set(reply["held"])
        for lost in set(ids) - held:  # the lease ran out: another worker may have it
            task = self.active.get(lost)
            if task is not None:
                logger.warning("turn %s: the claim was lost; stopping its handler", lost)
                task.cancel()

    async def _drain(self) -> None:
        if not self.active:
            return
        logger.info("draining %d turn(s) for up to %.0f s", len(self.active), self.drain_seconds)
        _, pending = await asyncio.wait(list(self.active.values()), timeout=self.drain_seconds)
        # Handed back first: the server ends each run (agent_lost) and offers the turn again;
        # then the handlers stop (what they still write is refused: their run has ended).
        for turn_id in [t for t, task in self.active.items() if task in pending]:
            await self._release(turn_id)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _release(self, turn_id: int) -> None:
        # Best effort: a turn not handed back is offered again when its lease runs out.
        frame = {"op": "release", "worker": self.name, "turn": turn_id}
        with contextlib.suppress(PublishError, ConnectionClosed, TimeoutError):
            await asyncio.wait_for(self.client.request(frame, retry=False), STOP_CLAIM_SECONDS)


async def _handle(handler: Handler, turn: Turn, run: Run) -> None:
    """Run the handler; a handler that answers at once is one append, RUN_STARTED in it.

    One that is still going after its first step gets its RUN_STARTED now and the session
    followed from the turn's message on, so a cancel or a steer sent since reaches it.
    """
    task = asyncio.ensure_future(handler(turn, run))
    try:
        await asyncio.sleep(0)  # the handler's first step, up to its first real wait
        if not task.done():
            await run.begin()
            try:
                await run.session.client.follow(run.session)
            except PublishError as exc:  # e.g. the socket's subscription limit
                logger.warning("turn %s: cancel and steers will not reach it: %s", turn.id, exc)
        await task
    except BaseException:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise


def _copy(client: SessionsClient) -> SessionsClient:
    """Another connection with ``client``'s credentials and settings."""
    return SessionsClient(
        client.base_url,
        client.api_key,
        token=client.token,
        coalesce_seconds=client.coalesce_seconds,
        max_backoff=client.max_backoff,
        heartbeat_seconds=client.heartbeat_seconds,
        label=client.label,
        max_event_bytes=client.max_event_bytes,
    )


def _turn(raw: dict[str, Any]) -> Turn:
    return Turn(
        id=int(raw["id"]),
        session=str(raw["session"]),
        message=str(raw["message"]),
        text=str(raw["text"]),
        agent=str(raw["agent"]),
        attempt=int(raw["attempt"]),
        run_id=str(raw["run_id"]),
        messages=list(raw.get("messages") or []),
        input=dict(raw.get("input") or {}),
        message_offset=str(raw.get("message_offset") or "now"),
    )
