"""What both frontend doors share: who is asking, coded errors, and following the log.

Authentication: ``Authorization: Bearer`` with an API key (``dsk_…``) or a signed browser token
(``access.mint_token``), else the Django session cookie; a write authenticated by the cookie
also needs Django's CSRF token. Streams wake on the channel layer's commit notifications and
always read the database, so any worker can serve any request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from sessions_app import credentials, dbexec, keys, log, revocation, services, watchdog
from sessions_app.access import Actor, get_session
from sessions_app.conf import setting
from sessions_app.domain import control
from sessions_app.domain.errors import (
    BadRequest,
    Conflict,
    CsrfFailed,
    LimitExceeded,
    NotFound,
    OffsetExpired,
    Unauthenticated,
)
from sessions_app.domain.fold import SessionState, fold
from sessions_app.domain.offsets import format_offset
from sessions_app.domain.runs import RunStatus
from sessions_app.log import forks
from sessions_app.models import Run, Session, Turn

FOLD_BATCH = 5000
ACTIVE = (RunStatus.RUNNING.value, RunStatus.CANCELLING.value)


class MessageExists(Conflict):
    code = "message_exists"


class NotRunning(Conflict):
    code = "not_running"


def method_not_allowed(allowed: str) -> JsonResponse:
    response = JsonResponse({"code": "method_not_allowed", "message": f"use {allowed}"}, status=405)
    response["Allow"] = allowed
    return response


def sse_response(body: AsyncIterator[str], **headers: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in headers.items():
        response[name] = value
    return response


def no_content() -> HttpResponse:
    response = HttpResponse(status=204)
    del response["Content-Type"]
    return response


# --- who is asking -----------------------------------------------------------------------------


async def actor(request: HttpRequest) -> Actor:
    """The actor behind a request, or Unauthenticated."""
    raw = credentials.request_bearer(request)
    if raw is not None:
        return await dbexec.run_read(credentials.actor_for_bearer, raw)
    auser = getattr(request, "auser", None)
    user = await auser() if auser is not None else AnonymousUser()
    if not user.is_authenticated:
        raise Unauthenticated("send Authorization: Bearer <API key or token>, or log in")
    if request.method not in credentials.SAFE_METHODS and await credentials.csrf_refused(request):
        raise CsrfFailed(
            "writes authenticated by the session cookie need the CSRF token (X-CSRFToken)"
        )
    return Actor(user)


def grant(request: HttpRequest, who: Actor) -> revocation.Grant:
    """How ``who`` got in, to ask again while a stream stays open (an API key is asked again
    as a key; a token through its user; a cookie through its user and its login)."""
    raw = credentials.request_bearer(request) or ""
    cookie = not raw and who.authenticated  # its session is loaded: no query
    login = credentials.login_of(getattr(request, "session", None)) if cookie else None
    return revocation.Grant(who, raw if raw.startswith(keys.PREFIX + "_") else None, login)


def watch(request: HttpRequest, who: Actor, name: str) -> revocation.Watch:
    return revocation.Watch(grant(request, who), name)


REVOKED = "you may no longer read this session"


def no_nul(value: object, what: str) -> None:
    """Refuse NUL characters in ids: PostgreSQL cannot compare text holding them (a 500)."""
    if isinstance(value, str) and "\x00" in value:
        raise BadRequest(f"{what} must not contain NUL characters")


async def find_session(who: Actor, name: object) -> Session:
    no_nul(name, "the session name")
    return await dbexec.run_read(get_session, who, name)


async def session_for(request: HttpRequest, name: object) -> Session:
    return await find_session(await actor(request), name)


def body(request: HttpRequest) -> bytes:
    """The request's body, or LimitExceeded (413) past ``MAX_FRAME_BYTES`` or past what the
    site accepts at all (Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``, an HTML 400 otherwise)."""
    limit = setting("MAX_FRAME_BYTES")
    try:
        raw = request.body
    except RequestDataTooBig:
        raw = None
    if raw is None or len(raw) > limit:
        raise LimitExceeded(f"the body is larger than {limit} bytes", limit="body_bytes")
    return raw


def json_body(request: HttpRequest) -> Any:
    raw = body(request)
    try:
        return json.loads(raw or b"null")
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        raise BadRequest("the body is not JSON", reason="bad_json") from None


# --- writing -------------------------------------------------------------------------------------


def _message_exists(session_pk: int, message_id: str) -> bool:
    return message_id in log.fold_session(session_pk).messages


@dataclass(frozen=True)
class Sent:
    """A user message a door appended: its last offset, and the turn it made (None when the
    session's policy made none, e.g. it steered the running answer instead)."""

    last: int
    turn: int | None

    def answered_by(self, event: dict[str, Any]) -> bool:
        """Whether ``event`` starts the run answering this message: the run that names its
        turn (two messages in flight never cross), or the next top-level run that names no
        turn (an agent that is not a turn worker)."""
        if not is_top_run_start(event):
            return False
        named = event.get("data", {}).get("turn")
        # An agent outside the runtime (the SDK alone) names no turn: the next run is its.
        return self.turn is None or named is None or named == self.turn


def _turn_of(session_pk: int, message_id: str) -> int | None:
    return (
        Turn.objects.filter(session_id=session_pk, message=message_id)
        .values_list("pk", flat=True)
        .first()
    )


async def send_user_message(
    session: Session,
    text: object,
    message_id: str | None,
    turn_input: dict[str, Any] | None = None,
) -> Sent:
    """Append a complete user message (``turn_input``: what the client sent beyond its text,
    kept on its turn for the agent). Refuses an id already used."""
    mid, events = control.user_message(text, message_id)
    exists = bool(message_id) and await dbexec.run_read(_message_exists, session.pk, mid)
    if exists:
        raise MessageExists(
            f"message {message_id!r} is already in this session; send a new message id",
            message_id=message_id,
        )
    request = services.request(session.pk, events)
    request.turn_input = turn_input
    result = await log.append(request)
    return Sent(result.last, await dbexec.run_read(_turn_of, session.pk, mid))


def _active_runs(session_pk: int) -> list[str]:
    rows = Run.objects.filter(session_id=session_pk, status__in=ACTIVE, parent__isnull=True)
    return list(rows.order_by("started_seq", "pk").values_list("run_id", flat=True))


async def active_runs(session_pk: int) -> list[str]:
    """Top-level runs of the session still going, oldest first."""
    return await dbexec.run_read(_active_runs, session_pk)


def _started_seq(session_pk: int, run_id: str) -> int | None:
    row = Run.objects.filter(session_id=session_pk, run_id=run_id).values_list(
        "started_seq", flat=True
    )
    return row.first()


async def started_seq(session_pk: int, run_id: str) -> int | None:
    return await dbexec.run_read(_started_seq, session_pk, run_id)


async def cancel(session: Session, run_id: str | None, reason: str) -> dict[str, Any]:
    """Append a CANCEL for ``run_id``, or for every run still going (NotRunning if none)."""
    targets = [run_id] if run_id else await active_runs(session.pk)
    if not targets:
        raise NotRunning("no run of this session is going; nothing to cancel")
    watchdog.ensure_running()  # a cancel nobody acknowledges still ends the run, in time
    result = await log.append(services.request(session.pk, control.cancel(run_id, reason)))
    return {"cancelled": targets, **services.ack(result)}


# --- reading ---------------------------------------------------------------------------------


def fold_until(session_pk: int, until: int) -> SessionState:
    """The folded state of a session up to and including offset ``until``."""
    columns = ("snapshot", "tail", "forked_from_id", "fork_seq")
    row = Session.objects.filter(pk=session_pk).values_list(*columns).first()
    if row is None:
        raise NotFound("no such session")
    snapshot, tail, parent, fork_seq = row
    if forks.is_fork(parent, fork_seq, tail):  # its sources' retention is its own
        tail = max(tail, forks.inherited_tail(parent, fork_seq))
    if until < tail:
        raise OffsetExpired(
            "entries at this offset were removed by retention", earliest=format_offset(tail)
        )
    if forks.is_fork(parent, fork_seq, tail):
        state = forks.inherited(parent, min(until, fork_seq))
    else:
        state = SessionState.from_dict(snapshot, tail) if snapshot else SessionState(seq=tail)
    after = state.seq
    while after < until:
        batch = [(s, b) for s, b in log.read(session_pk, after, FOLD_BATCH) if s <= until]
        fold(((seq, json.loads(body)) for seq, body in batch), state)
        if not batch:
            break
        after = batch[-1][0]
    state.seq = until
    return state


def first_run_after(session_pk: int, after: int) -> str | None:
    """The first top-level RUN_STARTED after offset ``after``, if any."""
    while True:
        batch = log.read(session_pk, after, FOLD_BATCH)
        for _seq, body in batch:
            event = json.loads(body)
            if is_top_run_start(event):
                return str(event["run"])
        if len(batch) < FOLD_BATCH:
            return None
        after = batch[-1][0]


def is_top_run_start(event: dict[str, Any]) -> bool:
    data = event.get("data")
    parent = data.get("parentRunId") if isinstance(data, dict) else None
    return event.get("type") == "RUN_STARTED" and bool(event.get("run")) and parent is None


async def stream_run(
    session_pk: int,
    after: int,
    on_event: Callable[[int, dict[str, Any]], tuple[list[str], bool]],
    on_idle: Callable[[], tuple[list[str], bool]],
    tick: float,
    watch: revocation.Watch | None = None,
    on_revoked: Callable[[], list[str]] = list,
) -> AsyncIterator[str]:
    """Follow the log after ``after`` as entries commit: ``on_event`` maps each entry to SSE
    text and says when the stream is over; ``on_idle`` answers ``tick`` seconds without news
    (keep-alives, timeouts); ``on_revoked`` ends the stream once ``watch`` finds that the
    reader may no longer read the session. One generator, so closing it (the client left)
    leaves the channel-layer groups at once."""
    async with revocation.Waiter(session_pk, watch) as waiter:  # joined before the first read
        while True:
            if watch is not None and not await watch.allowed():
                yield "".join(on_revoked())
                return
            rows = await log.aread(session_pk, after, setting("REPLAY_BATCH"))
            out: list[str] = []
            over = False
            for seq, body in rows:
                after = seq
                text, over = on_event(seq, json.loads(body))
                out += text
                if over:
                    break
            if not rows and not await waiter.wait(tick):
                out, over = on_idle()
            if out:
                yield "".join(out)
            if over:
                return


OPEN = ": stream-open\n\n"  # an SSE comment: makes the server send the headers at once


async def opened(body: AsyncIterator[str]) -> AsyncIterator[str]:
    """``body`` preceded by a comment, so the client sees the response start immediately."""
    yield OPEN
    async for text in body:
        yield text
