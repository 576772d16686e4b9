"""WebSocket authentication: the Django session cookie, or a short-lived signed token."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core import signing

from sessions_app import keys
from sessions_app.access import read_token
from sessions_app.conf import setting


@database_sync_to_async
def _user_for_token(token: str) -> tuple[Any, frozenset[str] | None]:
    try:
        user_pk, sessions = read_token(token, setting("TOKEN_MAX_AGE"))
    except signing.BadSignature:  # includes SignatureExpired
        return AnonymousUser(), None
    user = get_user_model()._default_manager.filter(pk=user_pk, is_active=True).first()
    return (user or AnonymousUser()), sessions


@database_sync_to_async
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
            user, sessions = await _actor_for_key(api_key)
        elif token:
            user, sessions = await _user_for_token(token)
        else:
            return await self.cookie_auth(scope, receive, send)
        scope = {**scope, "user": user, "session_scope": sessions}
        return await self.inner(scope, receive, send)
