"""The Vercel AI SDK UI message stream (v1): chat, resume, stop.

- ``POST <mount>/aisdk/chat`` (``DefaultChatTransport``'s ``api``): appends the last message
  (the user's) to the session named by the chat ``id``, waits for the agent's run after it and
  streams it as UI message chunks, then ``data: [DONE]``.
- ``GET <mount>/aisdk/chat/<id>/stream`` (``resumeStream()``): 204 when no run is going,
  otherwise the going run from its first chunk, then live.
- ``POST <mount>/aisdk/chat/<id>/stop``: cancels the runs going; their streams end with
  ``abort``. Aborting a fetch (``stop()`` in the client) only closes that stream.
"""

from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from sessions_app import refusals
from sessions_app.conf import setting
from sessions_app.domain import aisdk
from sessions_app.domain.errors import BadRequest, OffsetExpired, SessionError
from sessions_app.domain.events import MAX_ID_LENGTH
from sessions_app.doors import common

KEEPALIVE = ": keep-alive\n\n"


def _tick() -> float:
    return float(min(setting("DOORS_KEEPALIVE_SECONDS"), setting("DOORS_RUN_START_TIMEOUT")))


def parse_chat(body: Any) -> tuple[str, str | None, str]:
    """The chat id, the new message's id and its text from a ``sendMessages`` body."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object: {id, messages, trigger}")
    chat, messages, trigger = body.get("id"), body.get("messages"), body.get("trigger")
    if not isinstance(chat, str) or not chat:
        raise BadRequest("'id' must be the chat id (the session's name)")
    if trigger not in (None, "submit-message"):
        raise BadRequest(
            f"trigger {trigger!r} is not supported; send a new user message", reason="trigger"
        )
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of UI messages")
    last = messages[-1]
    text = aisdk.user_text(last)
    if not text:
        raise BadRequest("the last message must be a user message with text parts",
                         reason="no_user_message")  # fmt: skip
    mid = last.get("id")
    return chat, mid if isinstance(mid, str) and 0 < len(mid) <= MAX_ID_LENGTH else None, text


def sse(chunks: list[dict[str, Any]]) -> list[str]:
    return [aisdk.sse(chunk) for chunk in chunks]


class NewRun:
    """The stream of a POST: waits for the agent's run after the user's message, then maps it."""

    def __init__(self, timeout: float, sent: common.Sent) -> None:
        self.sent = sent
        self.deadline = time.monotonic() + timeout
        self.stream: aisdk.UIStream | None = None

    def on_event(self, seq: int, event: dict[str, Any]) -> tuple[list[str], bool]:
        if self.stream is None:
            if not self.sent.answered_by(event):
                return self.on_idle(keepalive=False)
            self.stream = aisdk.UIStream(event["run"])
            return sse(self.stream.start()), False
        out = sse(self.stream.feed(event))
        return ([*out, aisdk.DONE] if self.stream.done else out), self.stream.done

    def on_idle(self, keepalive: bool = True) -> tuple[list[str], bool]:
        if self.stream is None and time.monotonic() > self.deadline:
            error = aisdk.error_chunks(
                "no agent answered this message in time; it stays in the chat"
            )
            return [*sse(error), aisdk.DONE], True
        return ([KEEPALIVE] if keepalive else []), False


def revoked() -> list[str]:
    """The end of a stream whose reader may no longer read the chat."""
    return [*sse(aisdk.error_chunks(common.REVOKED)), aisdk.DONE]


@csrf_exempt
async def chat(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        return common.method_not_allowed("POST")
    try:
        who = await common.actor(request)
        name, mid, text = parse_chat(common.json_body(request))
        session = await common.find_session(who, name)
        sent = await common.send_user_message(session, text, mid)
    except SessionError as exc:
        return refusals.error_response(exc)
    follower = NewRun(setting("DOORS_RUN_START_TIMEOUT"), sent)
    watch = common.watch(request, who, name)
    body = common.stream_run(
        session.pk, sent.last, follower.on_event, follower.on_idle, _tick(), watch, revoked
    )
    return common.sse_response(common.opened(body), **aisdk.HEADERS)


class Replay:
    """The stream of a resume: the going run from its RUN_STARTED on."""

    def __init__(self, run_id: str) -> None:
        self.stream = aisdk.UIStream(run_id)

    def on_event(self, seq: int, event: dict[str, Any]) -> tuple[list[str], bool]:
        if event.get("type") == "RUN_STARTED" and event.get("run") == self.stream.run_id:
            return sse(self.stream.start()), False
        out = sse(self.stream.feed(event))
        return ([*out, aisdk.DONE] if self.stream.done else out), self.stream.done

    def on_idle(self) -> tuple[list[str], bool]:
        return [KEEPALIVE], False


@csrf_exempt
async def resume(request: HttpRequest, chat_id: str) -> HttpResponseBase:
    if request.method != "GET":
        return common.method_not_allowed("GET")
    try:
        who = await common.actor(request)
        session = await common.find_session(who, chat_id)
        going = await common.active_runs(session.pk)
        start = await common.started_seq(session.pk, going[-1]) if going else None
        if going and (start is None or start <= session.tail):
            raise OffsetExpired("the start of the going run was removed by retention")
    except SessionError as exc:
        return refusals.error_response(exc)
    if not going or start is None:
        return common.no_content()
    replay = Replay(going[-1])
    watch = common.watch(request, who, chat_id)
    body = common.stream_run(
        session.pk, start - 1, replay.on_event, replay.on_idle, _tick(), watch, revoked
    )
    return common.sse_response(common.opened(body), **aisdk.HEADERS)


@csrf_exempt
async def stop(request: HttpRequest, chat_id: str) -> HttpResponseBase:
    if request.method != "POST":
        return common.method_not_allowed("POST")
    try:
        session = await common.session_for(request, chat_id)
        done = await common.cancel(session, None, "stop")
    except SessionError as exc:
        return refusals.error_response(exc)
    return JsonResponse(done)
