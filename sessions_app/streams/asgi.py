"""An optional fast path: serve ``/v1/stream/`` before the site's middleware stack.

Mounted through ``urls.py`` the door works in any site, but every request then pays for the
site's middleware (sessions, CSRF, messages, clickjacking...), which under ASGI means a
thread hop per middleware and dominates a small append. ``with_streams`` answers the door's
requests with a Django handler whose only "middleware" is the door itself, plus the hooks of
the site's own ``SecurityMiddleware`` and ``XFrameOptionsMiddleware`` (headers only, no I/O);
everything else goes to the site's application unchanged::

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
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix
from django.utils.log import log_response
from django.utils.module_loading import import_string

from sessions_app.streams.views import stream_view

MOUNT = "/v1/stream/"
SECURITY_MIDDLEWARE = (SecurityMiddleware, XFrameOptionsMiddleware)


class StreamsHandler(ASGIHandler):
    """Django's ASGI handler with the door as its whole middleware chain."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._middleware_chain = self._serve
        self._security = _site_security_middleware()

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
            response = await self._serve(request)
            if response.status_code >= 400:  # as Django's handler logs them (django.request)
                reason, path = response.reason_phrase, request.path
                log_response("%s: %s", reason, path, response=response, request=request)  # type: ignore[arg-type]
            await self.send_response(response, send)
        finally:
            body_file.close()

    async def _serve(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase | None = None
        try:
            for middleware in self._security:  # SecurityMiddleware's redirect to HTTPS
                process_request = getattr(middleware, "process_request", None)
                if response is None and process_request is not None:
                    response = process_request(request)
            if response is None:
                await _attach_user(request)
                response = await stream_view(request, request.path[len(MOUNT) :])
        except Exception as exc:  # what Django's exception middleware would answer
            response = await sync_to_async(response_for_exception)(request, exc)
        for middleware in reversed(self._security):
            response = middleware.process_response(request, response)
        return response


def _site_security_middleware() -> list[Any]:
    """The site's middleware that only sets security headers (and redirects to HTTPS).

    Their ``process_request`` and ``process_response`` do no I/O, so the fast path calls them
    on the event loop, where going through the middleware would cost a thread hop each: the
    door's answers then carry the site's X-Frame-Options, X-Content-Type-Options,
    Referrer-Policy, Cross-Origin-Opener-Policy and Strict-Transport-Security, as the site's
    own pages do.
    """
    from django.conf import settings

    found = []
    for dotted in settings.MIDDLEWARE:
        cls = import_string(dotted)
        if isinstance(cls, type) and issubclass(cls, SECURITY_MIDDLEWARE):
            found.append(cls(_unused_view))
    return found


def _unused_view(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("the fast path calls these middlewares' hooks, not the middlewares")


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
