"""WebSocket authentication: the Django session cookie, or a short-lived signed token."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from django.contrib.auth.models import AnonymousUser

from sessions_app import credentials, dbexec
from sessions_app.access import Actor
from sessions_app.domain.errors import Unauthenticated


# These run on the log's reader threads (dbexec), whose database connections stay open: with
# database_sync_to_async every connect would open (and close) a database connection. A socket
# whose credential does not verify is accepted as anonymous, then closed with 4401.
def _token_actor(token: str) -> Actor:
    try:
        return credentials.actor_for_token(token)
    except Unauthenticated:
        return Actor(AnonymousUser())


def _key_actor(raw: str) -> Actor:
    return credentials.actor_for_key(raw) or Actor(AnonymousUser())


class TokenAuthMiddleware:
    """``Authorization: Bearer <API key>`` (agents) or ``?token=<signed token>`` (browsers)
    authenticate the socket; otherwise the Django session cookie decides."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cookie_auth = AuthMiddlewareStack(inner)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # This frame lives as long as the socket: what it keeps, every idle socket keeps
        # (the parsed query string was 640 bytes of each; issue #25).
        actor = await _bearer_actor(scope)
        if actor is None:
            return await self.cookie_auth(scope, receive, send)
        scope = {
            **scope,
            "user": actor.user,
            "session_scope": actor.sessions,
            "session_actor": actor,
        }
        return await self.inner(scope, receive, send)


async def _bearer_actor(scope: dict[str, Any]) -> Actor | None:
    """The actor of the socket's API key or signed token; None when it carries neither."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    token = (query.get("token") or [None])[0]
    api_key = credentials.scope_bearer(scope)
    if api_key:
        return await dbexec.run_read(_key_actor, api_key)
    if token:
        return await dbexec.run_read(_token_actor, token)
    return None
