"""AG-UI 1.0 over SSE: POST a ``RunAgentInput``, reconnect with ``Last-Event-ID``, cancel.

- ``POST <mount>/agui/`` appends the input's last message (a user message) to the session named
  by ``threadId``, waits for the first top-level run an agent starts after it, and streams
  that run as AG-UI events until it ends. ``RUN_STARTED.runId`` is the agent's run id on the
  log (the id the cancel endpoint takes), not the client's ``runId``.
- ``GET <mount>/agui/<thread>/connect`` continues after ``Last-Event-ID`` (or ``?after=``):
  RUN_STARTED, MESSAGES_SNAPSHOT up to that offset, the partial messages reopened under their
  own ids, then the rest of the run. 204 when nothing is left to continue.
- ``POST <mount>/agui/<thread>/cancel`` appends CANCEL (``{"runId": ...}`` or every run going).

Every event's offset is in the SSE ``id:`` line (on the last event an entry produced). Closing
the HTTP request only stops that stream: the run goes on, on the log.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from ag_ui.core import Event as AguiEvent
from ag_ui.core import RunAgentInput, TextPart
from ag_ui.encoder import EventEncoder
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import TypeAdapter, ValidationError

from sessions_app import dbexec, log, refusals
from sessions_app.conf import setting
from sessions_app.domain import agui
from sessions_app.domain.errors import BadRequest, SessionError
from sessions_app.domain.events import MAX_ID_LENGTH, has_nul
from sessions_app.domain.fold import SessionState
from sessions_app.domain.offsets import format_offset, parse_offset
from sessions_app.doors import common

EVENT: TypeAdapter[Any] = TypeAdapter(AguiEvent)
ENCODER = EventEncoder()
KEEPALIVE = ": keep-alive\n\n"


class InvalidInput(BadRequest):
    code = "invalid_input"


def encode(events: list[dict[str, Any]], offset: int | None = None) -> str:
    """SSE text of one entry's AG-UI events, validated by ``ag-ui-protocol``'s models; the
    entry's offset goes in the last event's ``id:`` line."""
    parts = [ENCODER.encode(EVENT.validate_python(event)) for event in events]
    if parts and offset is not None:
        parts[-1] = f"id: {format_offset(offset)}\n{parts[-1]}"
    return "".join(parts)


# --- POST: a new run ---------------------------------------------------------------------------


def parse_input(request: HttpRequest) -> RunAgentInput:
    raw = common.body(request)
    try:
        return RunAgentInput.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise InvalidInput(
            "the body is not an AG-UI RunAgentInput", errors=[
                {"loc": list(e["loc"]), "msg": e["msg"]} for e in errors[:20]
            ],
        ) from None  # fmt: skip


def user_message(run_input: RunAgentInput) -> tuple[str | None, str]:
    """The id and text of the input's last message, which must be the user's new message."""
    last = run_input.messages[-1] if run_input.messages else None
    if last is None or last.role != "user":
        raise BadRequest(
            "the last message must be the user's new message; this door starts a run "
            "by sending it", reason="no_user_message",
        )  # fmt: skip
    content = last.content
    if isinstance(content, str):
        text = content
    else:
        text = "".join(part.text for part in content if isinstance(part, TextPart))
    mid = last.id if isinstance(last.id, str) and 0 < len(last.id) <= MAX_ID_LENGTH else None
    return mid, text


def forwarded(run_input: RunAgentInput) -> dict[str, Any]:
    """What the frontend sent beyond the message, kept on the turn for the agent: its tools,
    context, state and forwardedProps (the gateway passes them on to an AG-UI upstream)."""
    dumped = run_input.model_dump(mode="json", by_alias=True)
    kept = {key: dumped.get(key) for key in ("tools", "context", "state", "forwardedProps")}
    if has_nul(kept):  # jsonb holds none: it would fail the whole group commit, not just this
        raise BadRequest(
            "tools, context, state and forwardedProps must not contain NUL (\\u0000) "
            "characters: the turn cannot store them", reason="nul",
        )  # fmt: skip
    return {key: value for key, value in kept.items() if value not in (None, [], {})}


class NewRun:
    """The stream of a POST: waits for the agent's run after the user's message, then maps it."""

    def __init__(
        self, thread: str, legacy: bool, timeout: float, sent: common.Sent, client_run: str = ""
    ) -> None:
        self.thread, self.legacy, self.client_run, self.sent = thread, legacy, client_run, sent
        self.deadline = time.monotonic() + timeout
        self.stream: agui.RunStream | None = None

    def on_event(self, seq: int, event: dict[str, Any]) -> tuple[list[str], bool]:
        if self.stream is None:
            if not self.sent.answered_by(event):
                return self.on_idle(keepalive=False)
            self.stream = agui.RunStream(self.thread, event["run"], legacy=self.legacy)
            return [encode([self.stream.run_started(event.get("time"))], seq)], False
        out = self.stream.feed(event)
        return ([encode(out, seq)] if out else []), self.stream.done

    def on_idle(self, keepalive: bool = True) -> tuple[list[str], bool]:
        if self.stream is None and time.monotonic() > self.deadline:
            return self.fail(
                "no agent started a run for this message in time; the message stays in the "
                "session", "no_agent",
            ), True  # fmt: skip
        return ([KEEPALIVE] if keepalive else []), False

    def on_revoked(self) -> list[str]:
        return self.fail(common.REVOKED, "not_found")

    def fail(self, message: str, code: str) -> list[str]:
        """End the stream with RUN_ERROR; a run no agent started is opened first (under the
        client's run id), so that every stream is a run: RUN_STARTED ... RUN_ERROR."""
        if self.stream is not None:
            return [encode(self.stream.fail(message, code))]
        stream = agui.RunStream(self.thread, self.client_run, legacy=self.legacy)
        return [encode([stream.run_started(), *stream.fail(message, code)])]


def _tick() -> float:
    return float(min(setting("DOORS_KEEPALIVE_SECONDS"), setting("DOORS_RUN_START_TIMEOUT")))


@csrf_exempt
async def run(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return common.method_not_allowed("POST")
    try:
        who = await common.actor(request)
        run_input = parse_input(request)
        session = await common.find_session(who, run_input.thread_id)
        mid, text = user_message(run_input)
        sent = await common.send_user_message(session, text, mid, forwarded(run_input))
    except SessionError as exc:
        return refusals.error_response(exc)
    follower = NewRun(
        run_input.thread_id,
        run_input.protocol_version is None,
        setting("DOORS_RUN_START_TIMEOUT"),
        sent,
        run_input.run_id,
    )
    watch = common.watch(request, who, run_input.thread_id)
    body = common.stream_run(
        session.pk,
        sent.last,
        follower.on_event,
        follower.on_idle,
        _tick(),
        watch,
        follower.on_revoked,
    )
    return common.sse_response(common.opened(body))


# --- GET: reconnect -----------------------------------------------------------------------------


def plan(session_pk: int, after: int | None) -> tuple[SessionState, str, int] | None:
    """What to continue: (state at the offset, run id, offset), or None (nothing to continue).

    The run is the top-level run going at the offset, else (with an offset) the first one
    started after it.
    """
    head, _tail = log.head_and_tail(session_pk)
    at = head if after is None else after
    if at > head:
        raise BadRequest(f"offset is beyond the head ({format_offset(head)})")
    state = common.fold_until(session_pk, at)
    going = [r.id for r in state.runs.values() if r.parent is None and not r.status.is_final]
    if going:
        return state, going[-1], at
    if after is None:
        return None
    run_id = common.first_run_after(session_pk, at)
    return (state, run_id, at) if run_id else None


class Continuation:
    def __init__(self, stream: agui.RunStream) -> None:
        self.stream = stream

    def on_event(self, seq: int, event: dict[str, Any]) -> tuple[list[str], bool]:
        out = self.stream.feed(event)
        return ([encode(out, seq)] if out else []), self.stream.done

    def on_idle(self) -> tuple[list[str], bool]:
        return [KEEPALIVE], False

    def on_revoked(self) -> list[str]:
        return [encode(self.stream.fail(common.REVOKED, "not_found"))]


async def _continue(
    header: str, session_pk: int, at: int, follower: Continuation, watch: Any
) -> AsyncIterator[str]:
    yield header
    if follower.stream.done:
        return
    body = common.stream_run(
        session_pk, at, follower.on_event, follower.on_idle, _tick(), watch, follower.on_revoked
    )
    async for text in body:
        yield text


@csrf_exempt
async def connect(request: HttpRequest, thread: str) -> HttpResponseBase:
    if request.method != "GET":
        return common.method_not_allowed("GET")
    try:
        who = await common.actor(request)
        session = await common.find_session(who, thread)
        raw = request.headers.get("Last-Event-ID") or request.GET.get("after")
        found = await dbexec.run_read(plan, session.pk, parse_offset(raw) if raw else None)
    except SessionError as exc:
        return refusals.error_response(exc)
    if found is None:
        return common.no_content()
    state, run_id, at = found
    legacy = not request.GET.get("protocolVersion")
    stream, header = agui.continuation(state, thread, run_id, legacy=legacy)
    watch = common.watch(request, who, thread)
    body = _continue(encode(header, at), session.pk, at, Continuation(stream), watch)
    return common.sse_response(body)


# --- POST: cancel -------------------------------------------------------------------------------


@csrf_exempt
async def cancel(request: HttpRequest, thread: str) -> HttpResponseBase:
    if request.method != "POST":
        return common.method_not_allowed("POST")
    try:
        session = await common.session_for(request, thread)
        body = common.json_body(request)
        if body is not None and not isinstance(body, dict):
            raise BadRequest('the body must be a JSON object: {"runId": ...} or {}')
        run_id = (body or {}).get("runId")
        if run_id is not None and not isinstance(run_id, str):
            raise BadRequest("'runId' must be a run id (a string)")
        common.no_nul(run_id, "'runId'")
        done = await common.cancel(session, run_id, "stop")
    except SessionError as exc:
        return refusals.error_response(exc)
    return JsonResponse(done)
