"""An optional fast path: serve ``/v1/stream/`` before the site's middleware stack.

Mounted through ``urls.py`` the door works in any site, but every request then pays for the
site's middleware (sessions, CSRF, messages, clickjacking...), which under ASGI means a
thread hop per middleware and dominates a small append. ``with_streams`` answers the door's
requests with a Django handler whose only "middleware" is the door itself; everything else
goes to the site's application unchanged::

    application = ProtocolTypeRouter(
        {"http": with_streams(django_asgi_app), "websocket": websocket_application()}
    )

The door does its own CORS, security headers and authentication (token, or the session cookie
with Django's CSRF check on writes), so nothing it needs is lost; it checks the ``Host``
against ``ALLOWED_HOSTS`` itself, before anything is read or written.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.contrib.auth import aget_user
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponseBase
from django.urls import set_script_prefix
from django.utils.log import log_response
from django.utils.module_loading import import_string

from sessions_app.streams.views import stream_view

MOUNT = "/v1/stream/"


class StreamsHandler(ASGIHandler):
    """Django's ASGI handler with the door as its whole middleware chain."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._middleware_chain = self._serve

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Django wraps each request in its own ThreadSensitiveContext, which starts a new
        # thread per request for the request signals' sync receivers. The door's own database
        # work runs in the log's threads, so the shared sync thread serves those receivers.
        if _direct(scope):
            await self._handle_direct(scope, receive, send)
        else:
            await self.handle(scope, receive, send)

    async def _handle_direct(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A request that touches no database connection of Django's own threads.

        Django's ``handle`` sends ``request_started`` and ``request_finished``, whose receiver
        (``close_old_connections``) runs in the shared sync thread: two thread hops per request,
        about as long as the append itself. Those connections are only used by cookie
        authentication, so requests without a cookie (token or anonymous) skip the signals.
        They also skip the disconnect watch, which only matters to long responses, so live
        reads (``live=``) keep Django's full path.
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, refused = self.create_request(scope, body_file)
            if request is None:
                assert refused is not None
                await self.send_response(refused, send)
                return
            try:
                response = await self._serve(request)
            except Exception as exc:  # what Django's exception middleware would answer
                response = await sync_to_async(response_for_exception)(request, exc)
            if response.status_code >= 400:  # as Django's handler logs them (django.request)
                reason, path = response.reason_phrase, request.path
                log_response("%s: %s", reason, path, response=response, request=request)  # type: ignore[arg-type]
            await self.send_response(response, send)
        finally:
            body_file.close()

    async def _serve(self, request: HttpRequest) -> HttpResponseBase:
        await _attach_user(request)
        response: HttpResponseBase = await stream_view(request, request.path[len(MOUNT) :])
        return response


async def _attach_user(request: HttpRequest) -> None:
    """The session cookie's user, as AuthenticationMiddleware would give it (lazily)."""
    from django.conf import settings

    key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not key:
        return
    request.session = import_string(settings.SESSION_ENGINE + ".SessionStore")(key)

    async def auser() -> Any:
        return await aget_user(request)

    request.auser = auser  # type: ignore[attr-defined]


def _direct(scope: dict[str, Any]) -> bool:
    if any(name == b"cookie" for name, _ in scope.get("headers", ())):
        return False
    query = scope.get("query_string", b"")
    # As Django will read it (l%69ve=sse is live=sse too).
    return not query or "live" not in parse_qs(query.decode("latin-1"), keep_blank_values=True)


def with_streams(application: Any) -> Any:
    """``application`` with ``/v1/stream/...`` served by the door's fast path."""
    streams = StreamsHandler()

    async def route(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "http" and scope.get("path", "").startswith(MOUNT):
            return await streams(scope, receive, send)
        return await application(scope, receive, send)

    return route
