"""Who is asking: the one reading of a bearer credential (an API key or a signed token) into
an actor, whether a session cookie's login still holds, and the CSRF check for writes that
the session cookie authenticates.

Every door uses these: the WebSocket middleware (``auth``), REST (``api``), Durable Streams
(``streams.views``), the AG-UI and AI SDK doors (``doors.common``) and the re-checks of open
connections (``revocation``). Each door still chooses which credentials it takes and how it
words a refusal (those answers are part of its protocol).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DbStore
from django.core import signing
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.utils.crypto import constant_time_compare

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


def login_of(session: Any) -> str | None:
    """The key of the Django session a cookie-authenticated request or socket rests on: None
    when ``session`` (``request.session``, a socket's ``scope["session"]``) holds no login.

    Call it once the user has been read from it (the session is loaded then: no query)."""
    if session is None or not session.session_key or SESSION_KEY not in session:
        return None
    return str(session.session_key)


def user_of(session: Any) -> Any:
    """The primary key of the user a loaded session is logged in as (None if none)."""
    from django.contrib.auth import get_user_model

    try:
        return get_user_model()._meta.pk.to_python(session[SESSION_KEY])
    except (KeyError, ValidationError):
        return None


def logins_held(logins: list[tuple[str, Any]]) -> set[str]:
    """Which of these ``(session key, user)`` logins still hold, as Django would judge the
    cookie now: the session was neither flushed (a logout) nor expired, it names the same user,
    and its auth hash still matches the user's (a password change logs a user's other sessions
    out; ``SECRET_KEY_FALLBACKS`` are honoured).

    Read only, unlike ``django.contrib.auth.get_user``, which flushes or cycles the session it
    judges: the browser's cookie is not ours to change. The ``db`` engine (and engines that
    read their rows as it does) is read in one query per 500 keys; any other engine with one
    load per key, as Django reads it (``cached_db`` trusts its cache before its rows).
    Django's ``file`` engine, loading an expired session, deletes it and writes a new empty
    one, as it does when the browser brings the cookie."""
    engine = import_module(settings.SESSION_ENGINE)
    store = engine.SessionStore
    found: dict[str, dict[str, Any]] = {}
    keys_ = sorted({key for key, _ in logins})
    if getattr(store, "load", None) is DbStore.load:  # the rows are the truth
        model = store.get_model_class()
        decode = store().decode
        for start in range(0, len(keys_), 500):
            rows = model.objects.filter(
                session_key__in=keys_[start : start + 500], expire_date__gt=timezone.now()
            ).values_list("session_key", "session_data")
            found.update((key, decode(data)) for key, data in rows)
    else:
        for key in keys_:
            data = store(key).load()
            if data:
                found[key] = data
    return {key for key, user in logins if _holds(found.get(key), user)}


def _holds(data: dict[str, Any] | None, user: Any) -> bool:
    if not data or SESSION_KEY not in data:
        return False
    try:
        if user._meta.pk.to_python(data[SESSION_KEY]) != user.pk:
            return False
    except ValidationError:
        return False
    if not hasattr(user, "get_session_auth_hash"):
        return True  # Django checks no hash for such a user model either
    kept = data.get(HASH_SESSION_KEY)
    if not isinstance(kept, str) or not kept:
        return False
    hashes = [user.get_session_auth_hash()]
    fallbacks = getattr(user, "get_session_auth_fallback_hash", None)
    if fallbacks is not None:
        hashes += list(fallbacks())
    return any(constant_time_compare(kept, h) for h in hashes)


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
