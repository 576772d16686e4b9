"""The REST door for agent workers: claim turns, renew their lease, hand them back.

Mounted by ``sessions_app.api`` under its router (``/api/sessions/turns/...`` on the demo
site), with API keys only: a worker is an agent, never a browser. A worker key
(``ApiKey.agents``) claims turns of every session for the agents it serves; any other key
claims turns of its own user's sessions. ``python manage.py run_agents`` and the SDK's
``Worker`` (``sessions_app.agents.worker``) renew and hand back here, and claim over their
WebSocket (the ``claim`` frame: the same ``dispatch.claim_waiting``); see
docs/sessions/agents.md.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from sessions_app import credentials, dbexec, dispatch
from sessions_app.access import Actor
from sessions_app.domain.errors import Unauthenticated
from sessions_app.refusals import domain_errors
from sessions_app.schemas import ClaimIn, ErrorOut, ReleaseIn, RenewIn

ERRORS: dict[Any, Any] = {frozenset({400, 401, 403, 404, 409, 413, 422, 503}): ErrorOut}


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


class RenewOut(Schema):
    held: list[int]


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


@router.post(
    "/claim",
    response={200: ClaimOut, **ERRORS},
    summary="Claim turns (waits up to `wait` seconds for one)",
    openapi_extra={"security": [{"ApiKeyAuth": []}]},
)
async def claim(request: HttpRequest, payload: ClaimIn) -> Any:
    who = await dbexec.run_read(_worker_actor, request)
    taken = await dispatch.claim_waiting(
        lambda: who, payload.agents, payload.worker, payload.limit, payload.wait
    )
    return {"turns": [t.as_dict() for t in taken]}


@router.post(
    "/renew",
    response={200: RenewOut, **ERRORS},
    summary="Renew the lease of claimed turns; answers the ones still held",
    openapi_extra={"security": [{"ApiKeyAuth": []}]},
)
async def renew(request: HttpRequest, payload: RenewIn) -> Any:
    who = await dbexec.run_read(_worker_actor, request)
    return {"held": await dispatch.executor()(dispatch.renew, who, payload.worker, payload.turns)}


@router.post(
    "/release",
    response={200: ReleaseOut, **ERRORS},
    summary="Hand a claimed turn back (a worker shutting down)",
    openapi_extra={"security": [{"ApiKeyAuth": []}]},
)
async def release(request: HttpRequest, payload: ReleaseIn) -> Any:
    who = await dbexec.run_read(_worker_actor, request)
    done = await dispatch.executor()(dispatch.release, who, payload.worker, payload.turn)
    return {"released": done}
