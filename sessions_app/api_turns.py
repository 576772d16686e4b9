"""The REST door for agent workers: claim turns, renew their lease, hand them back.

Mounted by ``sessions_app.api`` under its router (``/api/sessions/turns/...`` on the demo
site), with API keys only: a worker is an agent, never a browser. A worker key
(``ApiKey.agents``) claims turns of every session for the agents it serves; any other key
claims turns of its own user's sessions. ``python manage.py run_agents`` and the SDK's
``Worker`` (``sessions_app.agents.worker``) speak it; see docs/sessions/agents.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest
from ninja import Field, Router, Schema

from sessions_app import credentials, dbexec, dispatch, log
from sessions_app.access import Actor
from sessions_app.conf import setting
from sessions_app.domain.errors import Unauthenticated
from sessions_app.refusals import domain_errors
from sessions_app.schemas import ErrorOut, RowId

ERRORS: dict[Any, Any] = {frozenset({400, 401, 403, 404, 409, 413, 422, 503}): ErrorOut}
logger = logging.getLogger("sessions_app.turns")
POLL_SECONDS = 2.0  # a waiting claim looks again this often: a lost wake-up costs no more


class ClaimIn(Schema):
    agents: list[str] = Field(min_length=1, max_length=50)
    worker: str = Field(min_length=1, max_length=200)
    limit: int = Field(1, ge=1, le=50)
    wait: float = Field(0, ge=0, le=60)


class TurnOut(Schema):
    id: int
    session: str
    message: str
    message_offset: str
    text: str
    agent: str
    attempt: int
    run_id: str
    lease_seconds: float
    messages: list[dict[str, Any]]
    input: dict[str, Any]


class ClaimOut(Schema):
    turns: list[TurnOut]


class RenewIn(Schema):
    worker: str = Field(min_length=1, max_length=200)
    turns: list[RowId] = Field(max_length=500)


class RenewOut(Schema):
    held: list[int]


class ReleaseIn(Schema):
    worker: str = Field(min_length=1, max_length=200)
    turn: RowId


class ReleaseOut(Schema):
    released: bool


router = Router(tags=["turns"], auth=None)
router.add_decorator(domain_errors, mode="operation")


def _worker_actor(request: HttpRequest) -> Actor:
    raw = credentials.request_bearer(request)
    found = credentials.actor_for_key(raw) if raw else None
    if found is None:
        raise Unauthenticated("send an API key as Authorization: Bearer")
    return found


def _executor() -> Any:
    # SQLite takes one writer at a time: claims go through the log's writer thread there.
    return dbexec.run_write if connection.vendor == "sqlite" else dbexec.run_read


@router.post(
    "/claim",
    response={200: ClaimOut, **ERRORS},
    summary="Claim turns (waits up to `wait` seconds for one)",
    openapi_extra={"security": [{"ApiKeyAuth": []}]},
)
async def claim(request: HttpRequest, payload: ClaimIn) -> Any:
    who = await dbexec.run_read(_worker_actor, request)
    agents = [a for a in payload.agents if _valid_agent(a)]
    run = _executor()
    wait = min(payload.wait, setting("TURN_CLAIM_WAIT_MAX"))
    deadline = time.monotonic() + wait
    wakeups = await _wakeups() if wait > 0 else None
    while True:
        woken = wakeups.next() if wakeups is not None else None  # taken before looking
        taken = await run(dispatch.claim, who, agents, payload.worker, payload.limit)
        left = deadline - time.monotonic()
        if taken or left <= 0:
            return {"turns": [t.as_dict() for t in taken]}
        if woken is None:
            await asyncio.sleep(min(left, POLL_SECONDS))
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), min(left, POLL_SECONDS))


def _valid_agent(name: str) -> bool:
    return (
        0 < len(name) <= 128
        and name.replace("_", "").replace(".", "").replace("-", "").replace("*", "").isalnum()
    )


class Wakeups:
    """This event loop's one listener for "turns may be claimed" (``log.wake_workers``).

    Every waiting claim of the process waits on the same event instead of joining the group
    itself: one channel and one group membership per process, renewed well before the channel
    layer's group expiry, and no receive is ever cancelled.
    """

    RENEW_SECONDS = 600.0

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def next(self) -> asyncio.Event:
        """The event the next wake-up sets (take it before looking for work)."""
        return self.event

    async def start(self) -> None:
        channel = await self.layer.new_channel()
        await self.layer.group_add(log.TURNS_GROUP, channel)
        self.task = asyncio.create_task(self._listen(channel))

    async def _listen(self, channel: str) -> None:
        joined = time.monotonic()
        while True:
            try:
                await self.layer.receive(channel)
            except Exception:  # the layer is down for a moment: claims poll meanwhile
                logger.warning("turn wake-ups: the channel layer failed", exc_info=True)
                await asyncio.sleep(1.0)
            woken, self.event = self.event, asyncio.Event()
            woken.set()
            if time.monotonic() - joined > self.RENEW_SECONDS:
                with contextlib.suppress(Exception):
                    await self.layer.group_add(log.TURNS_GROUP, channel)
                    joined = time.monotonic()


_wakeups_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Wakeups] = (
    weakref.WeakKeyDictionary()
)


async def _wakeups() -> Wakeups | None:
    layer = get_channel_layer()
    if layer is None:
        return None
    loop = asyncio.get_running_loop()
    found = _wakeups_by_loop.get(loop)
    if found is None or found.task is None or found.task.done():
        found = _wakeups_by_loop[loop] = Wakeups(layer)
        await found.start()
    return found


@router.post(
    "/renew",
    response={200: RenewOut, **ERRORS},
    summary="Renew the lease of claimed turns; answers the ones still held",
    openapi_extra={"security": [{"ApiKeyAuth": []}]},
)
async def renew(request: HttpRequest, payload: RenewIn) -> Any:
    who = await dbexec.run_read(_worker_actor, request)
    return {"held": await _executor()(dispatch.renew, who, payload.worker, payload.turns)}


@router.post(
    "/release",
    response={200: ReleaseOut, **ERRORS},
    summary="Hand a claimed turn back (a worker shutting down)",
    openapi_extra={"security": [{"ApiKeyAuth": []}]},
)
async def release(request: HttpRequest, payload: ReleaseIn) -> Any:
    who = await dbexec.run_read(_worker_actor, request)
    done = await _executor()(dispatch.release, who, payload.worker, payload.turn)
    return {"released": done}
