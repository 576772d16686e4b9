"""WebSocket authentication: the Django session cookie, or a short-lived signed token."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from django.contrib.auth.models import AnonymousUser

from sessions_app import dbexec, keys
from sessions_app.access import user_for_token


# These run on the log's reader threads (dbexec), whose database connections stay open: with
# database_sync_to_async every connect would open (and close) a database connection.
def _user_for_token(token: str) -> tuple[Any, frozenset[str] | None]:
    user, sessions = user_for_token(token)
    return (user or AnonymousUser()), sessions


def _actor_for_key(raw: str) -> tuple[Any, frozenset[str] | None]:
    key = keys.authenticate(raw)
    if key is None:
        return AnonymousUser(), None
    actor = keys.actor_for(key)
    return actor.user, actor.sessions


def _bearer(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, credential = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and credential:
                return credential.strip()
    return None


class TokenAuthMiddleware:
    """``Authorization: Bearer <API key>`` (agents) or ``?token=<signed token>`` (browsers)
    authenticate the socket; otherwise the Django session cookie decides."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cookie_auth = AuthMiddlewareStack(inner)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("token") or [None])[0]
        api_key = _bearer(scope)
        if api_key:
            user, sessions = await dbexec.run_read(_actor_for_key, api_key)
        elif token:
            user, sessions = await dbexec.run_read(_user_for_token, token)
        else:
            return await self.cookie_auth(scope, receive, send)
        scope = {**scope, "user": user, "session_scope": sessions}
        return await self.inner(scope, receive, send)
