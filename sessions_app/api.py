"""REST API of sessions_app (django-ninja router; the site mounts it, e.g. at /api/sessions/).

For agents and back offices: sessions, membership, batched publishing with idempotent
producers, history with offset pagination, long-poll for agents that cannot hold a socket,
runs, live control, presence and API keys. Handlers are thin: they resolve the actor, call
the access layer and the log service, and map ``SessionError`` to a coded 4xx.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Query, Router, Status
from ninja.security import HttpBearer
from ninja.security import SessionAuth as NinjaSessionAuth

from sessions_app import credentials, dbexec, keys, log, revocation, runs, services, turns
from sessions_app.access import (
    Actor,
    check_can_create,
    check_creatable_name,
    get_session,
    visible_to,
)
from sessions_app.api_turns import router as turns_router
from sessions_app.conf import setting
from sessions_app.domain import control
from sessions_app.domain.errors import (
    BadRequest,
    Conflict,
    LimitExceeded,
    NotFound,
    OffsetExpired,
    RunEnded,
    SessionError,
    Unauthenticated,
)
from sessions_app.domain.offsets import format_offset, parse_offset
from sessions_app.doors.common import watch as access_watch
from sessions_app.models import PROTOCOL_STATE_KEY, ApiKey, Membership, Run, Session
from sessions_app.refusals import domain_errors, error_response
from sessions_app.schemas import (
    AckOut,
    CancelIn,
    ErrorOut,
    EventsOut,
    FailIn,
    FeedbackIn,
    FinishIn,
    InterruptIn,
    KeyCreated,
    KeyIn,
    KeyList,
    KeyOut,
    MemberIn,
    MessageIn,
    PresenceOut,
    PublishIn,
    RunIn,
    RunList,
    RunOut,
    SessionIn,
    SessionList,
    SessionOut,
    SessionPatch,
    SnapshotOut,
    SteerIn,
)
from sessions_app.ws import roster

NINJA_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 422: "invalid_input"}  # fmt: skip
ERRORS: dict[Any, Any] = {frozenset({400, 401, 403, 404, 409, 410, 413, 422, 503}): ErrorOut}
MAX_PAGE = 1000


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer dsk_…``: an agent's API key."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        return keys.authenticate(token)


class SessionAuth(NinjaSessionAuth):
    """The Django session cookie. CSRF is checked only when the cookie authenticates the
    request: a write with no credential (or a wrong key) answers 401 unauthenticated, while a
    cookie-authenticated write without the CSRF token still answers 403."""

    def _get_key(self, request: HttpRequest) -> str | None:
        if not request.user.is_authenticated:
            return None
        return super()._get_key(request)


def actor(request: HttpRequest) -> Actor:
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return keys.actor_for(auth)
    return Actor(request.user)


def status_of(exc: SessionError) -> int:
    """The HTTP status of a refusal: the one each error carries (``domain.errors``)."""
    return exc.status


def _body_too_big(request: HttpRequest) -> HttpResponse | None:
    """A coded 413 for a body over Django's DATA_UPLOAD_MAX_MEMORY_SIZE, read before any
    handler could turn RequestDataTooBig into an HTML page or a 500."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    try:
        request.body  # noqa: B018 (read here so that the refusal is ours)
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        refused = LimitExceeded(f"the body is larger than {limit} bytes", limit="body_bytes")
        return error_response(refused)
    return None


def coded(response: HttpResponse) -> HttpResponse:
    """Give django-ninja's own error bodies (validation, auth) a machine-readable code."""
    if response.status_code < 400 or "json" not in response.get("Content-Type", ""):
        return response
    try:
        body = json.loads(response.content)
    except ValueError:
        return response
    if isinstance(body, dict) and "code" not in body:
        detail = body.get("detail")
        message = detail if isinstance(detail, str) else "the request is invalid; see detail"
        body = {
            "code": NINJA_CODES.get(response.status_code, "error"),
            "message": message,
            "detail": detail,
        }
        return JsonResponse(body, status=response.status_code)
    return response


def coded_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    if asyncio.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            return _body_too_big(request) or coded(await view(request, *args, **kwargs))

        return async_wrapper

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return _body_too_big(request) or coded(view(request, *args, **kwargs))

    return wrapper


router = Router(tags=["sessions"], auth=[ApiKeyAuth(), SessionAuth()])
router.add_decorator(coded_errors, mode="view")
router.add_decorator(domain_errors, mode="operation")
router.add_router("/turns/", turns_router)  # agent workers: claim, renew, release


# --- sessions ------------------------------------------------------------------------------


def session_out(session: Session) -> dict[str, Any]:
    return {
        "name": session.name,
        "title": session.title,
        "metadata": {k: v for k, v in session.metadata.items() if k != PROTOCOL_STATE_KEY},
        "owner": session.owner.get_username() if session.owner else None,
        "members": sorted(
            m.user.get_username() for m in session.memberships.select_related("user")
        ),
        "head": format_offset(session.head),
        "earliest": format_offset(session.tail),
        "closed": session.closed,
        "content_type": session.content_type,
        "created_at": session.created_at,
        "last_activity": session.last_activity,
    }


def _owned(request: HttpRequest, name: str) -> Session:
    session = get_session(actor(request), name, events=False)
    if session.owner_id != actor(request).user.pk:
        raise NotFound("no such session")  # members may use a session, only its owner manage it
    return session


def _users(usernames: list[str]) -> list[Any]:
    users = list(get_user_model()._default_manager.filter(username__in=usernames, is_active=True))
    if set(usernames) - {u.get_username() for u in users}:
        # Unknown and inactive alike, and without the names: no list of who exists.
        raise BadRequest("every member must be an active user", field="members")
    return users


@router.post("/", response={201: SessionOut, **ERRORS}, summary="Create a session")
def create_session(request: HttpRequest, payload: SessionIn) -> Any:
    who = actor(request)
    owner = who.user
    check_can_create(who)
    if payload.name:
        check_creatable_name(payload.name)
    _check_metadata(payload.metadata)
    if payload.name and Session.objects.filter(name=payload.name).exists():
        raise Conflict("a session with this name exists", name=payload.name)
    members = _users(payload.members)
    try:
        with transaction.atomic():
            fields = {"owner": owner, "title": payload.title, "metadata": payload.metadata,
                      "retention_days": payload.retention_days}  # fmt: skip
            session = Session.objects.create(
                **({"name": payload.name} if payload.name else {}), **fields
            )
            Membership.objects.bulk_create(
                [Membership(session=session, user=u) for u in members if u != owner]
            )
    except IntegrityError as exc:  # made by someone else since the check above
        raise Conflict("a session with this name exists", name=payload.name) from exc
    return Status(201, session_out(session))


def _paged(
    rows: QuerySet[Any], offset: int, limit: int, out: Callable[[Any], dict[str, Any]]
) -> dict[str, Any]:
    """One page of a list: its items, how many there are in all, and where the next starts."""
    count = rows.count()
    more = offset + limit if offset + limit < count else None
    return {"items": [out(r) for r in rows[offset : offset + limit]], "count": count,
            "next_offset": more}  # fmt: skip


@router.get("/", response={200: SessionList, **ERRORS}, summary="List your sessions")
def list_sessions(
    request: HttpRequest,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=10**9),
) -> Any:
    act = actor(request)
    sessions = visible_to(act.user).select_related("owner").order_by("-last_activity", "-pk")
    if act.sessions is not None:
        sessions = sessions.filter(name__in=act.sessions)
    return _paged(sessions, offset, limit, session_out)


@router.get("/{name}", response={200: SessionOut, **ERRORS}, summary="A session")
def session_detail(request: HttpRequest, name: str) -> Any:
    return session_out(get_session(actor(request), name, events=False))


@router.patch("/{name}", response={200: SessionOut, **ERRORS}, summary="Rename, annotate or close")
def update_session(request: HttpRequest, name: str, payload: SessionPatch) -> Any:
    session = _owned(request, name)
    if payload.closed is False and session.closed:
        raise Conflict("a closed session stays closed")
    if payload.metadata is not None:
        _check_metadata(payload.metadata)
    changed = [f for f in ("title", "metadata", "closed") if getattr(payload, f) is not None]
    for field in changed:
        setattr(session, field, getattr(payload, field))
    if changed:  # only what the PATCH names: a stale copy of the rest is never written back
        session.save(update_fields=changed)
    return session_out(session)


def _check_metadata(metadata: dict[str, Any]) -> None:
    # Every session list and answer carries a session's metadata: at Django's body limit
    # (2.5 MB each) a page of 100 sessions took 823 MB of one worker, and a page may hold 500.
    most = setting("MAX_METADATA_BYTES")
    try:
        size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())
    except RecursionError:
        raise BadRequest("metadata is nested too deeply", field="metadata") from None
    if size > most:
        raise LimitExceeded(
            f"metadata is {size} bytes of JSON; at most {most}", limit="metadata_bytes"
        )
    if PROTOCOL_STATE_KEY in metadata:
        raise BadRequest(
            f"metadata.{PROTOCOL_STATE_KEY} is kept by the server (Durable Streams protocol "
            "state); choose another key", field="metadata",
        )  # fmt: skip
    turns.check_policy(metadata)


@router.post("/{name}/members", response={200: SessionOut, **ERRORS}, summary="Add a member")
def add_member(request: HttpRequest, name: str, payload: MemberIn) -> Any:
    session = _owned(request, name)
    (user,) = _users([payload.username])
    if user.pk != session.owner_id:
        Membership.objects.get_or_create(session=session, user=user)
    return session_out(session)


@router.delete(
    "/{name}/members/{username}", response={200: SessionOut, **ERRORS}, summary="Remove a member"
)
def remove_member(request: HttpRequest, name: str, username: str) -> Any:
    session = _owned(request, name)
    removed, _ = Membership.objects.filter(session=session, user__username=username).delete()
    if not removed:
        raise NotFound("no such member")
    return session_out(session)


# --- events --------------------------------------------------------------------------------


def _publish(
    request: HttpRequest, name: str, events: Any, producer: Any = None, **extra: Any
) -> dict[str, Any]:
    session = get_session(actor(request), name)
    result = log.append_sync(services.request(session.pk, events, producer))
    return {**services.ack(result), **extra}


@router.post("/{name}/events", response={200: AckOut, **ERRORS}, summary="Publish events (a batch)")
def publish(request: HttpRequest, name: str, payload: PublishIn) -> Any:
    producer = payload.producer.dict() if payload.producer else None
    return _publish(request, name, payload.events, producer)


def _page(session_pk: int, after: int, limit: int) -> dict[str, Any]:
    head, tail = log.head_and_tail(session_pk)
    if after < tail:
        raise OffsetExpired(
            "entries at this offset were removed by retention; read the snapshot",
            earliest=format_offset(tail), resume="snapshot",
        )  # fmt: skip
    if after > head:
        raise BadRequest(f"offset is beyond the head ({format_offset(head)})")
    rows = log.read(session_pk, after, limit)
    events = [{"offset": format_offset(seq), **json.loads(body)} for seq, body in rows]
    reached = rows[-1][0] if rows else after
    return {"events": events, "next_offset": format_offset(reached), "head": format_offset(head),
            "up_to_date": reached >= head}  # fmt: skip


@router.get("/{name}/events", response={200: EventsOut, **ERRORS}, summary="History, by offset")
def history(
    request: HttpRequest, name: str, after: str = "-1", limit: int = Query(100, ge=1, le=MAX_PAGE)
) -> Any:
    session = get_session(actor(request), name)
    return _page(session.pk, parse_offset(after), limit)


@router.get(
    "/{name}/events/wait",
    response={200: EventsOut, **ERRORS},
    summary="Long-poll for entries after an offset",
    description="Answers as soon as there is anything after `after`, or when `timeout` seconds "
    "pass (then with no events and `up_to_date: true`). For agents that cannot hold a socket.",
    auth=None,
    openapi_extra={"security": [{"ApiKeyAuth": []}, {"SessionAuth": []}]},
)
async def wait_for_events(
    request: HttpRequest,
    name: str,
    after: str = "-1",
    timeout: float = Query(25, gt=0),  # noqa: ASYNC109 (a query parameter of the API)
    limit: int = Query(100, ge=1, le=MAX_PAGE),
) -> Any:
    who = await sync_to_async(_request_actor)(request)
    session = await dbexec.run_read(get_session, who, name)
    start = parse_offset(after)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(timeout, setting("REST_LONG_POLL_MAX"))
    # The waiter also hears the caller's access change (a key revoked, a member removed, a
    # user deactivated) and wakes at least every ACCESS_RECHECK_SECONDS to ask again: without
    # it, a poll opened before a revocation answered what was written after it.
    watch = access_watch(request, who, name)
    async with revocation.Waiter(session.pk, watch) as waiter:
        # Joined before reading: anything committed after the read wakes us.
        page = await dbexec.run_read(_page, session.pk, start, limit)
        while not page["events"] and (left := deadline - loop.time()) > 0:
            await waiter.wait(left)
            if not await watch.allowed():
                raise NotFound("no such session")
            page = await dbexec.run_read(_page, session.pk, start, limit)
    return page


def _request_actor(request: HttpRequest) -> Actor:
    raw = credentials.request_bearer(request)
    if raw is not None:
        found = credentials.actor_for_key(raw)
        if found is not None:
            return found
    elif request.user.is_authenticated:
        return Actor(request.user)
    raise Unauthenticated("log in, or send an API key as Authorization: Bearer")


@router.get("/{name}/snapshot", response={200: SnapshotOut, **ERRORS}, summary="The folded state")
def snapshot(request: HttpRequest, name: str) -> Any:
    state = log.fold_session(get_session(actor(request), name).pk)
    return {"offset": format_offset(state.seq), "state": state.as_dict()}


# --- runs and control ----------------------------------------------------------------------


def run_out(run: Run) -> dict[str, Any]:
    return {"run_id": run.run_id, "status": run.status, "agent": run.agent,
            "parent": run.parent.run_id if run.parent else None, "reason": run.reason,
            "started_at": run.started_at, "ended_at": run.ended_at, "usage": run.usage}  # fmt: skip


def _run(session: Session, run_id: str) -> Run:
    run = Run.objects.filter(session=session, run_id=run_id).select_related("parent").first()
    if run is None:
        raise NotFound("no such run", run=run_id)
    return run


@router.get("/{name}/runs", response={200: RunList, **ERRORS}, summary="Runs, oldest first")
def list_runs(
    request: HttpRequest,
    name: str,
    limit: int = Query(100, ge=1, le=500),
    offset: int = Query(0, ge=0, le=10**9),
) -> Any:
    """A page of runs: a session holds any number of them (one a turn of its agent)."""
    session = get_session(actor(request), name)
    runs = session.runs.select_related("parent").order_by("started_at", "pk")
    return _paged(runs, offset, limit, run_out)


@router.post("/{name}/runs", response={201: RunOut, **ERRORS}, summary="Start a run")
def start_run(request: HttpRequest, name: str, payload: RunIn) -> Any:
    session = get_session(actor(request), name)
    run_id = payload.run_id or control.new_id("run")
    event: dict[str, Any] = {"type": "RUN_STARTED", "run": run_id}
    if payload.agent:
        event["agent"] = payload.agent
    if payload.parent:
        event["data"] = {"parentRunId": payload.parent}
    log.append_sync(services.request(session.pk, [event]))
    return Status(201, run_out(_run(session, run_id)))


@router.post(
    "/{name}/runs/{run_id}/finish", response={200: RunOut, **ERRORS}, summary="Finish a run"
)
def finish_run(request: HttpRequest, name: str, run_id: str, payload: FinishIn) -> Any:
    session = get_session(actor(request), name)
    event = {"type": "RUN_FINISHED", "run": run_id, "data": {"outcome": payload.outcome}}
    log.append_sync(services.request(session.pk, [event]))
    return run_out(_run(session, run_id))


@router.post("/{name}/runs/{run_id}/fail", response={200: RunOut, **ERRORS}, summary="Fail a run")
def fail_run(request: HttpRequest, name: str, run_id: str, payload: FailIn) -> Any:
    session = get_session(actor(request), name)
    data = {"message": payload.message, **({"code": payload.code} if payload.code else {})}
    log.append_sync(
        services.request(session.pk, [{"type": "RUN_ERROR", "run": run_id, "data": data}])
    )
    return run_out(_run(session, run_id))


@router.post(
    "/{name}/runs/{run_id}/heartbeat",
    response={200: RunOut, **ERRORS},
    summary="The agent is alive",
)
def heartbeat(request: HttpRequest, name: str, run_id: str) -> Any:
    session = get_session(actor(request), name)
    if not runs.heartbeat(session.pk, run_id):
        raise RunEnded("the run is not running", run=run_id)
    return run_out(_run(session, run_id))


@router.post("/{name}/messages", response={200: AckOut, **ERRORS}, summary="Send a user message")
def send_message(request: HttpRequest, name: str, payload: MessageIn) -> Any:
    message, events = control.user_message(payload.text)
    return _publish(request, name, events, message=message)


@router.post("/{name}/cancel", response={200: AckOut, **ERRORS}, summary="Cancel a run, or all")
def cancel(request: HttpRequest, name: str, payload: CancelIn) -> Any:
    return _publish(request, name, control.cancel(payload.run, payload.reason))


@router.post("/{name}/steer", response={200: AckOut, **ERRORS}, summary="Steer a running run")
def steer(request: HttpRequest, name: str, payload: SteerIn) -> Any:
    return _publish(request, name, control.steer(payload.run, payload.text))


@router.post(
    "/{name}/interrupt", response={200: AckOut, **ERRORS}, summary="Cancel, then a new message"
)
def interrupt(request: HttpRequest, name: str, payload: InterruptIn) -> Any:
    message, events = control.interrupt(payload.run, payload.text)
    return _publish(request, name, events, message=message)


@router.post("/{name}/feedback", response={200: AckOut, **ERRORS}, summary="Rate a message")
def feedback(request: HttpRequest, name: str, payload: FeedbackIn) -> Any:
    from sessions_app import feedback as ratings

    who = actor(request)
    session = get_session(who, name)
    append = ratings.request(
        who.user.get_username(), session.pk, payload.message, payload.rating,
        payload.comment, payload.correction,
    )  # fmt: skip
    return ratings.ack(log.append_sync(append), payload.message)


@router.get(
    "/{name}/presence",
    response={200: PresenceOut, **ERRORS},
    summary="Devices attached now",
    auth=None,
    openapi_extra={"security": [{"ApiKeyAuth": []}, {"SessionAuth": []}]},
)
async def presence(request: HttpRequest, name: str) -> Any:
    who = await sync_to_async(_request_actor)(request)
    session = await dbexec.run_read(get_session, who, name)
    return {"devices": await roster.attached(session.pk)}


# --- API keys ------------------------------------------------------------------------------


def key_out(key: ApiKey, secret: str | None = None) -> dict[str, Any]:
    out = {
        "id": key.pk,
        "name": key.name,
        "prefix": key.prefix,
        "all_sessions": key.all_sessions,
        "sessions": sorted(key.sessions.values_list("name", flat=True)),
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked": key.revoked_at is not None,
    }
    return {**out, "key": secret} if secret else out


def _people_only(request: HttpRequest) -> Any:
    if isinstance(getattr(request, "auth", None), ApiKey):
        raise NotFound("API keys are managed by people, not by keys")
    return request.user


@router.post(
    "/keys/", response={201: KeyCreated, **ERRORS}, summary="Create an API key (shown once)"
)
def create_key(request: HttpRequest, payload: KeyIn) -> Any:
    user = _people_only(request)
    sessions = [get_session(Actor(user), name, events=False) for name in payload.sessions]
    key, secret = keys.create_key(user, payload.name, sessions, all_sessions=payload.all_sessions)
    return Status(201, key_out(key, secret))


@router.get("/keys/", response={200: KeyList, **ERRORS}, summary="Your API keys")
def list_keys(
    request: HttpRequest,
    limit: int = Query(100, ge=1, le=500),
    offset: int = Query(0, ge=0, le=10**9),
) -> Any:
    mine = ApiKey.objects.filter(user=_people_only(request)).order_by("-created_at", "-pk")
    return _paged(mine, offset, limit, key_out)


@router.delete("/keys/{key_id}", response={200: KeyOut, **ERRORS}, summary="Revoke an API key")
def revoke_key(request: HttpRequest, key_id: int) -> Any:
    key = ApiKey.objects.filter(user=_people_only(request), pk=key_id).first()
    if key is None:
        raise NotFound("no such key")
    keys.revoke(key)
    key.refresh_from_db()
    return key_out(key)
