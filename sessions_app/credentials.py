"""Who is asking: the one reading of a bearer credential (an API key or a signed token) into
an actor, and the CSRF check for writes that the session cookie authenticates.

Every door uses these: the WebSocket middleware (``auth``), REST (``api``), Durable Streams
(``streams.views``), the AG-UI and AI SDK doors (``doors.common``) and the re-checks of open
connections (``revocation``). Each door still chooses which credentials it takes and how it
words a refusal (those answers are part of its protocol).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from sessions_app import keys
from sessions_app.access import Actor, active_user, read_token
from sessions_app.domain.errors import Unauthenticated

INVALID = "the API key or token is invalid or expired"
INACTIVE = "the token's user is no longer active"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer(header: str) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` value ("" if it names
    none); None for any other kind of header."""
    if header[:7].lower() != "bearer ":
        return None
    return header[7:].strip()


def request_bearer(request: HttpRequest) -> str | None:
    return bearer(request.headers.get("Authorization", ""))


def scope_bearer(scope: dict[str, Any]) -> str | None:
    """A WebSocket's bearer credential (None when it sends none, or an empty one)."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return bearer(value.decode("latin-1")) or None
    return None


def actor_for_key(raw: str) -> Actor | None:
    """The actor of an API key (``dsk_…``), or None if no active key has this secret."""
    key = keys.authenticate(raw)
    return keys.actor_for(key) if key is not None else None


def token_claims(raw: str) -> tuple[Any, frozenset[str] | None]:
    """The user primary key and session names a signed token carries; Unauthenticated if its
    signature does not verify or it is older than ``TOKEN_MAX_AGE``."""
    from sessions_app.conf import setting

    try:
        return read_token(raw, setting("TOKEN_MAX_AGE"))
    except signing.BadSignature:  # includes SignatureExpired
        raise Unauthenticated(INVALID) from None


def actor_for_token(raw: str) -> Actor:
    """The actor of a signed token; Unauthenticated if it is invalid, expired or its user is
    no longer active."""
    user_pk, sessions = token_claims(raw)
    user = active_user(user_pk)
    if user is None:
        raise Unauthenticated(INACTIVE)
    return Actor(user, sessions)


def actor_for_bearer(raw: str) -> Actor:
    """The actor of an API key, else of a signed token; Unauthenticated if neither."""
    return actor_for_key(raw) or actor_for_token(raw)


def _no_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse()


async def csrf_refused(request: HttpRequest) -> bool:
    """Whether Django's CSRF check refuses this request.

    The doors' views are csrf_exempt (bearer clients have no CSRF token), so the check runs
    here against a stand-in view: given the real one, the middleware would let it pass.
    """
    refused = await sync_to_async(CsrfViewMiddleware(_no_view).process_view)(
        request, _no_view, (), {}
    )
    return refused is not None
