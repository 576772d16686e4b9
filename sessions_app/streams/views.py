"""The Durable Streams door: ``/v1/stream/<name>``, one async view per method.

Each handler parses the request (``protocol``), asks the stream service (``store``) in the
log's database threads, and maps the answer or the error to the protocol's statuses and
headers. Authentication: a signed token (``Authorization: Bearer`` or ``?token=``), else the
Django session cookie; writes authenticated by cookie also need Django's CSRF token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from sessions_app import credentials, dbexec
from sessions_app.access import Actor, active_user, check_name
from sessions_app.conf import setting
from sessions_app.domain.errors import (
    BadRequest,
    LimitExceeded,
    NotFound,
    OffsetExpired,
    ProducerSeqGap,
    ProducerStaleEpoch,
    SessionError,
    StreamClosed,
    Unauthenticated,
)
from sessions_app.domain.kept import Kept
from sessions_app.domain.offsets import format_offset
from sessions_app.streams import protocol, store
from sessions_app.streams.errors import (
    PayloadTooLarge,
    Unauthorized,
    status_of,
)
from sessions_app.streams.live import Waiter, reader_watch

RESERVED_PREFIX = "__ds/"  # the protocol's subscription APIs, which we do not offer
ALLOW_METHODS = "GET, POST, PUT, DELETE, HEAD, OPTIONS"
ALLOW_HEADERS = (
    "content-type, authorization, if-none-match, Stream-Seq, Stream-TTL, Stream-Expires-At, "
    "Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, Stream-Forked-From, "
    "Stream-Fork-Offset, Stream-Fork-Sub-Offset"
)
EXPOSE_HEADERS = (
    "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, "
    "Stream-Expires-At, Stream-SSE-Data-Encoding, Producer-Epoch, Producer-Seq, "
    "Producer-Expected-Seq, Producer-Received-Seq, ETag, Content-Type, Location"
)
CONTENT_SECURITY_POLICY = "sandbox; default-src 'none'"
# Response types a browser shows without running anything; every other one is an attachment.
SHOWN_INLINE = frozenset({protocol.JSON, "text/plain", "text/event-stream"})
TRUE = "true"


# --- the view --------------------------------------------------------------------------------


@csrf_exempt
async def stream_view(request: HttpRequest, name: str) -> HttpResponseBase:
    handler = HANDLERS.get(request.method or "")
    try:
        if handler is None:
            response: HttpResponseBase = HttpResponse(status=405)
            response["Allow"] = ALLOW_METHODS
        elif request.method == "OPTIONS":
            response = HttpResponse(status=204)
        else:
            # Before anything is read or written: the fast path has no CommonMiddleware to do
            # it, and a refused host must not leave a stream behind (Location needs the host).
            request.get_host()
            check_name(name)
            if name.startswith(RESERVED_PREFIX):
                raise NotFound("the subscription APIs (__ds/) are not offered by this server")
            response = await handler(request, name, await _access(request))
    except RequestDataTooBig:
        response = _error(PayloadTooLarge("the body is larger than this site accepts"))
    except DisallowedHost as exc:
        # Logged where Django logs it, so that a site's filters on that logger still apply.
        logging.getLogger("django.security.DisallowedHost").error(str(exc))
        response = _error(BadRequest("this site does not answer to the Host the request names"))
    except SessionError as exc:
        response = _error(exc)
    return _with_common_headers(response)


def _with_common_headers(response: HttpResponseBase) -> HttpResponseBase:
    if response.status_code in (204, 304):
        del response["Content-Type"]  # no body, so no type (Django adds text/html)
    # A stream's body is whatever its creator sent, under the type they chose (text/html,
    # image/svg+xml...), served from the site's origin: a browser must never run it. The
    # sandbox gives a rendered body an opaque origin with no script; types that a browser
    # would render are downloaded instead of shown.
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    shown = response.get("Content-Type")
    if shown is not None and protocol.media_type(shown) not in SHOWN_INLINE:
        response["Content-Disposition"] = "attachment"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Methods"] = ALLOW_METHODS
    response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return response


def _error(exc: SessionError) -> HttpResponse:
    body = {"code": exc.code, "message": exc.message}
    if isinstance(exc, LimitExceeded) and "limit" in exc.details:
        body["limit"] = exc.details["limit"]  # which ceiling, as the other doors say it
    response = HttpResponse(
        json.dumps(body),
        status=status_of(exc),
        content_type="application/json",
    )
    if isinstance(exc, StreamClosed):
        response["Stream-Closed"] = TRUE
        if "head" in exc.details:
            response["Stream-Next-Offset"] = format_offset(exc.details["head"])
    elif isinstance(exc, ProducerSeqGap):
        response["Producer-Expected-Seq"] = str(exc.details["expected_seq"])
        response["Producer-Received-Seq"] = str(exc.details["received_seq"])
    elif isinstance(exc, ProducerStaleEpoch):
        response["Producer-Epoch"] = str(exc.details["current_epoch"])
    return response


# --- who is asking ---------------------------------------------------------------------------


BAD_TOKEN = "the token is invalid, expired or its user inactive; ask for a new one"
# Per event loop: whether a token's user is still active, asked at most once a second.
ACTIVE_USER_KEPT = 1.0
_recent_users: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Kept[Any, Any]] = (
    weakref.WeakKeyDictionary()
)


async def _token_actor(token: str) -> Actor:
    """The token's actor: signature and age checked every time, the user's activity at most
    once a second per worker (an agent appending message after message would otherwise pay a
    database query for each)."""
    try:
        user_pk, sessions = credentials.token_claims(token)
    except Unauthenticated:
        raise Unauthorized(BAD_TOKEN) from None
    loop = asyncio.get_running_loop()
    recent = _recent_users.get(loop)
    if recent is None:
        recent = _recent_users[loop] = Kept(ACTIVE_USER_KEPT)
    now = time.monotonic()
    user = recent.get(user_pk, now)
    if user is None:
        user = await dbexec.run_read(active_user, user_pk)
        if user is None:
            raise Unauthorized(BAD_TOKEN)
        recent.keep(user_pk, user, now)
    return Actor(user, sessions)


def _token(request: HttpRequest) -> str | None:
    raw = credentials.request_bearer(request)
    if raw is not None:
        return raw or None
    return request.GET.get("token") or None


async def _access(request: HttpRequest) -> store.Access:
    prefix = setting("ANONYMOUS_STREAM_PREFIX")
    token = _token(request)
    if token:
        return store.Access(await _token_actor(token), prefix)
    auser = getattr(request, "auser", None)
    user = await auser() if auser is not None else AnonymousUser()
    # A cookie rides along on cross-site requests: writes need Django's CSRF token too,
    # whatever the stream (the cookie's user may own one under the anonymous prefix too).
    unsafe = request.method not in credentials.SAFE_METHODS
    if user.is_authenticated and unsafe and await credentials.csrf_refused(request):
        raise Unauthorized(
            "writes authenticated by the session cookie need the CSRF token "
            "(X-CSRFToken header), or use a token: Authorization: Bearer <token>"
        )
    login = (
        credentials.login_of(getattr(request, "session", None)) if user.is_authenticated else None
    )
    return store.Access(Actor(user), prefix, login)


# --- PUT: create or fork ---------------------------------------------------------------------


async def _put(request: HttpRequest, name: str, access: store.Access) -> HttpResponse:
    create = _create_request(request, name)
    location = request.build_absolute_uri(request.path)  # anything that can refuse, before writing
    stream, created = await dbexec.run_write(store.create, access, create)
    response = HttpResponse(status=201 if created else 200, content_type=stream.content_type)
    response["Stream-Next-Offset"] = format_offset(stream.head)
    if created:
        response["Location"] = location
    if stream.closed:
        response["Stream-Closed"] = TRUE
    return response


def _create_request(request: HttpRequest, name: str) -> store.CreateRequest:
    headers = request.headers
    ttl = protocol.parse_ttl(headers.get("Stream-TTL"))
    expires_raw = headers.get("Stream-Expires-At")
    expires_at = protocol.parse_expires_at(expires_raw)
    if ttl is not None and expires_at is not None:
        raise BadRequest("send Stream-TTL or Stream-Expires-At, not both")
    fork_from = _fork_source(request, name, headers.get("Stream-Forked-From"))
    sub_offset = protocol.parse_sub_offset(headers.get("Stream-Fork-Sub-Offset"))
    fork_offset = protocol.parse_fork_offset(headers.get("Stream-Fork-Offset"))
    if fork_from is None and "Stream-Fork-Sub-Offset" in headers:
        raise BadRequest("Stream-Fork-Sub-Offset needs Stream-Forked-From")
    if fork_from is None and fork_offset is not None:
        raise BadRequest("Stream-Fork-Offset needs Stream-Forked-From")
    raw_type = request.META.get("CONTENT_TYPE")
    content_type = (
        None if fork_from is not None and not raw_type else protocol.creation_type(raw_type)
    )
    return store.CreateRequest(
        name=name,
        content_type=content_type,
        ttl=ttl,
        expires_at=expires_at,
        expires_raw=expires_raw.strip() if expires_raw is not None else None,
        closed=protocol.is_true(headers.get("Stream-Closed")),
        fork_from=fork_from,
        fork_offset=fork_offset,
        sub_offset=sub_offset,
        body=request.body,
    )


def _fork_source(request: HttpRequest, name: str, raw: str | None) -> str | None:
    """The source's name from ``Stream-Forked-From``: its path under this door, or a name."""
    if raw is None:
        return None
    mount = request.path[: len(request.path) - len(name)]  # e.g. "/v1/stream/"
    raw = raw.strip()
    if "://" in raw:
        raw = "/" + raw.split("://", 1)[1].split("/", 1)[-1]
    source = raw[len(mount) :] if raw.startswith(mount) else raw.lstrip("/")
    return check_name(source)


# --- POST: append or close -------------------------------------------------------------------


async def _post(request: HttpRequest, name: str, access: store.Access) -> HttpResponse:
    headers = request.headers
    claim = protocol.parse_producer(
        request.META.get("HTTP_PRODUCER_ID"),
        request.META.get("HTTP_PRODUCER_EPOCH"),
        request.META.get("HTTP_PRODUCER_SEQ"),
    )
    close = protocol.is_true(headers.get("Stream-Closed"))
    body = request.body
    if not body and not close:
        raise BadRequest("an append needs a body (or Stream-Closed: true to close the stream)")
    raw_type = request.META.get("CONTENT_TYPE", "")
    if body and not raw_type:
        raise BadRequest("an append needs a Content-Type matching the stream's")
    post = store.Post(
        access,
        name,
        body,
        protocol.media_type(raw_type),
        claim,
        headers.get("Stream-Seq"),
        close,
    )
    appended = await store.append(post)
    return _appended_response(appended, claim is not None and appended.first <= appended.head)


def _appended_response(appended: store.Appended, producer_accepted: bool) -> HttpResponse:
    ok = producer_accepted and not appended.duplicate
    response = HttpResponse(status=200 if ok else 204)
    response["Stream-Next-Offset"] = format_offset(appended.head)
    if appended.closed:
        response["Stream-Closed"] = TRUE
    if appended.producer_epoch is not None:
        response["Producer-Epoch"] = str(appended.producer_epoch)
        response["Producer-Seq"] = str(appended.producer_seq)
    return response


# --- HEAD and DELETE -------------------------------------------------------------------------


async def _head(request: HttpRequest, name: str, access: store.Access) -> HttpResponse:
    stream = await dbexec.run_read(store.open_stream, access, name)
    response = HttpResponse(content_type=stream.content_type)
    response["Stream-Next-Offset"] = format_offset(stream.head)
    response["Cache-Control"] = "no-store"
    # The tag a GET of the whole stream (no offset, or -1) answers with once it reaches the tail.
    response["ETag"] = protocol.etag(stream.name, None, stream.head, closed_at_end=stream.closed)
    if stream.closed:
        response["Stream-Closed"] = TRUE
    if "ttl" in stream.state and stream.ttl_seconds is not None:
        response["Stream-TTL"] = str(stream.ttl_seconds)
    if stream.expires_raw:
        response["Stream-Expires-At"] = stream.expires_raw
    return response


async def _delete(request: HttpRequest, name: str, access: store.Access) -> HttpResponse:
    pk = await dbexec.run_write(store.delete, access, name)
    await store.announce_change([pk])
    return HttpResponse(status=204)


# --- GET: catch-up, long-poll, SSE -----------------------------------------------------------


def _open_for_read(access: store.Access, name: str) -> store.Stream:
    stream = store.open_stream(access, name)
    store.touch(stream)
    return stream


async def _get(request: HttpRequest, name: str, access: store.Access) -> HttpResponseBase:
    start = protocol.parse_start(request.GET.getlist("offset"))
    live = request.GET.get("live")
    if live not in (None, "long-poll", "sse"):
        raise BadRequest("live must be long-poll or sse")
    if live and start.given is None:
        raise BadRequest("live reads need an offset (-1 for the beginning, now for the tail)")
    stream = await dbexec.run_read(_open_for_read, access, name)
    after = stream.head if start.now else start.seq
    if after > stream.head:
        raise BadRequest(f"offset is beyond the tail {format_offset(stream.head)}")
    if after < stream.tail:
        raise OffsetExpired("entries at this offset were removed by retention")
    cursor = request.GET.get("cursor")
    if live == "sse":
        return _sse(stream, after, cursor, reader_watch(access, name))
    if live == "long-poll":
        watch = reader_watch(access, name)
        return await _long_poll(request, stream, start, after, cursor, watch)
    if start.now:
        return _at_now(stream)
    rows = await dbexec.run_read(store.read_batch, stream, after)
    return _catch_up(request, stream, start, after, rows)


def _at_now(stream: store.Stream) -> HttpResponse:
    body = b"[]" if stream.json else b""
    response = HttpResponse(body, content_type=stream.content_type)
    response["Stream-Next-Offset"] = format_offset(stream.head)
    response["Stream-Up-To-Date"] = TRUE
    response["Cache-Control"] = "no-store"
    if stream.closed:
        response["Stream-Closed"] = TRUE
    return response


def _catch_up(
    request: HttpRequest,
    stream: store.Stream,
    start: protocol.Start,
    after: int,
    rows: list[tuple[int, bytes]],
) -> HttpResponse:
    end = rows[-1][0] if rows else after
    at_tail = end >= stream.head
    closed = stream.closed and at_tail
    tag = protocol.etag(stream.name, start.given, end, closed_at_end=closed)
    if request.headers.get("If-None-Match") == tag:
        response = HttpResponse(status=304)
    else:
        bodies = [body for _, body in rows]
        payload = protocol.json_array(bodies) if stream.json else b"".join(bodies)
        response = HttpResponse(payload, content_type=stream.content_type)
    response["ETag"] = tag
    response["Stream-Next-Offset"] = format_offset(end)
    response["Cache-Control"] = _cache_control(stream, at_tail)
    if at_tail:
        response["Stream-Up-To-Date"] = TRUE
    if closed:
        response["Stream-Closed"] = TRUE
    return response


def _cache_control(stream: store.Stream, at_tail: bool) -> str:
    """History below the tail never changes: public streams let CDNs keep it a while."""
    if stream.owner_id is not None:
        return "private, no-cache"
    return "no-cache" if at_tail else "public, max-age=60, stale-while-revalidate=300"


async def _long_poll(
    request: HttpRequest,
    stream: store.Stream,
    start: protocol.Start,
    after: int,
    cursor: str | None,
    watch: Any = None,
) -> HttpResponse:
    """Answer at once if there is data past ``after``; else wait for some, a close, or time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + setting("LONG_POLL_TIMEOUT")
    async with Waiter(stream.pk, watch) as waiter:
        while True:
            if watch is not None and not await watch.allowed():
                raise NotFound("no such stream")  # the reader lost its access meanwhile
            rows = await dbexec.run_read(store.read_batch, stream, after)
            if rows:
                response = _catch_up(request, stream, start, after, rows)
                break
            stream = await dbexec.run_read(store.refresh, stream)
            remaining = deadline - loop.time()
            if (stream.closed and after >= stream.head) or remaining <= 0:
                response = _poll_ended(stream, after)
                break
            await waiter.wait(remaining)
    if not stream.closed or response.status_code == 200:
        response["Stream-Cursor"] = protocol.next_cursor(cursor, time.time())
    return response


def _poll_ended(stream: store.Stream, after: int) -> HttpResponse:
    response = HttpResponse(status=204)
    response["Stream-Next-Offset"] = format_offset(after)
    response["Stream-Up-To-Date"] = TRUE
    if stream.closed:
        response["Stream-Closed"] = TRUE
    return response


def _sse(
    stream: store.Stream, after: int, cursor: str | None, watch: Any = None
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        _sse_events(stream, after, protocol.next_cursor(cursor, time.time()), watch),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    if not protocol.is_text(stream.content_type):
        response["Stream-SSE-Data-Encoding"] = "base64"
    return response


async def _sse_events(
    stream: store.Stream, after: int, cursor: str, watch: Any = None
) -> AsyncIterator[bytes]:
    """One ``data`` event (everything new) then one ``control`` event, per step.

    The data is read before the closed flag, so an append-and-close reaches the reader before
    the final control that says the stream is closed.
    """
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + setting("SSE_MAX_SECONDS")
    say_control = True  # the first step always tells the reader where it stands
    async with Waiter(stream.pk, watch) as waiter:
        while True:
            if watch is not None and not await watch.allowed():
                return  # the reader lost its access meanwhile (ends as a deleted stream does)
            try:
                rows = await dbexec.run_read(store.read_batch, stream, after)
                stream = await dbexec.run_read(store.refresh, stream)
            except SessionError:  # deleted meanwhile (or the database is gone): end the stream
                return
            if rows:
                after = rows[-1][0]
            at_tail = after >= stream.head
            closed = stream.closed and at_tail
            if rows or say_control or closed:
                yield _sse_step(stream, rows, after, cursor, at_tail, closed)
            if closed:
                return
            say_control = False
            if at_tail:
                remaining = stop_at - loop.time()
                if remaining <= 0:
                    return
                # No wake-up within the timeout: send a keep-alive control next step.
                say_control = not await waiter.wait(min(setting("LONG_POLL_TIMEOUT"), remaining))


def _sse_step(
    stream: store.Stream,
    rows: list[tuple[int, bytes]],
    after: int,
    cursor: str,
    at_tail: bool,
    closed: bool,
) -> bytes:
    data = protocol.sse_data(stream.content_type, [body for _, body in rows]) if rows else ""
    control = protocol.control_fields(after, cursor, up_to_date=at_tail, closed=closed)
    return (data + protocol.sse_control(control)).encode()


Handler = Callable[[HttpRequest, str, store.Access], Awaitable[HttpResponseBase]]
HANDLERS: dict[str, Handler] = {
    "GET": _get,
    "HEAD": _head,
    "PUT": _put,
    "POST": _post,
    "DELETE": _delete,
    "OPTIONS": _head,  # answered before dispatch; listed so the view knows the method
}
