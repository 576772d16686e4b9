"""API keys for agents: made once, stored hashed, looked up by prefix, scoped, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.utils import timezone

from sessions_app.access import Actor
from sessions_app.domain.errors import BadRequest
from sessions_app.models import ApiKey, Session

PREFIX = "dsk"
# Writing last_used_at on every request would turn reads into writes; once a minute is enough.
TOUCH_EVERY = timedelta(seconds=60)


def _digest(secret: str) -> str:
    # The secret is 32 random bytes: a fast hash cannot be brute-forced, and it keeps
    # authentication cheap on every request.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    user: Any,
    name: str,
    sessions: Iterable[Session] = (),
    *,
    all_sessions: bool = False,
    agents: str = "",
) -> tuple[ApiKey, str]:
    """Make a key; return it and its full text, which is shown once and never stored.

    A key reaches either every session of its user (``all_sessions=True``) or only the
    ``sessions`` listed; it is never both, and never neither: asking for a key that would reach
    nothing is refused, so that no caller gets an all-sessions key by forgetting its scope.
    A worker key (``agents``: the agent names it answers for, comma-separated, ``*`` for any)
    has neither: it reaches a session only while it holds one of its turns. The REST door
    never makes one (site code, the admin and ``make_worker_key`` do).
    """
    sessions = list(sessions)
    if agents:
        if all_sessions or sessions:
            raise BadRequest("a worker key reaches sessions through their turns only")
        return _make(user, name, agents=agents)
    if all_sessions == bool(sessions):
        raise BadRequest(
            "a key reaches either all_sessions or the sessions listed: give exactly one",
            field="sessions",
        )
    key, secret = _make(user, name, all_sessions=all_sessions)
    if sessions:
        key.sessions.set(sessions)
    return key, secret


def _make(user: Any, name: str, **fields: Any) -> tuple[ApiKey, str]:
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user=user, name=name, prefix=prefix, hashed=_digest(secret), **fields
    )
    return key, f"{PREFIX}_{prefix}_{secret}"


def _split(raw: object) -> tuple[str, str] | None:
    """The prefix and secret of a key's text, or None if it is not one."""
    if not isinstance(raw, str) or raw.count("_") < 2 or not raw.startswith(PREFIX + "_"):
        return None
    _, prefix, secret = raw.split("_", 2)
    return prefix, secret


def _holds(key: ApiKey | None, secret: str) -> bool:
    """Whether ``key`` (active, as read) has this secret and an active user."""
    if key is None or not hmac.compare_digest(key.hashed, _digest(secret)):
        return False
    return bool(key.user.is_active)


def _touch(keys: list[ApiKey]) -> None:
    now = timezone.now()
    stale = [k for k in keys if k.last_used_at is None or now - k.last_used_at > TOUCH_EVERY]
    if stale:
        ApiKey.objects.filter(pk__in=[k.pk for k in stale]).update(last_used_at=now)
        for key in stale:
            key.last_used_at = now


def authenticate(raw: object) -> ApiKey | None:
    """The active key ``raw`` names, or None."""
    split = _split(raw)
    if split is None:
        return None
    prefix, secret = split
    active = ApiKey.objects.select_related("user").filter(revoked_at__isnull=True)
    key = active.filter(prefix=prefix).first()
    if not _holds(key, secret):
        return None
    assert key is not None
    _touch([key])
    return key


def authenticate_many(raws: Iterable[str]) -> dict[str, ApiKey]:
    """``authenticate`` for many texts at once: the active key each names (those naming none
    are left out), in one query, plus one to touch those not used within ``TOUCH_EVERY``."""
    split = {raw: s for raw in set(raws) if (s := _split(raw)) is not None}
    active = ApiKey.objects.select_related("user").filter(revoked_at__isnull=True)
    by_prefix = {k.prefix: k for k in active.filter(prefix__in={p for p, _ in split.values()})}
    found = {
        raw: by_prefix[p] for raw, (p, secret) in split.items() if _holds(by_prefix.get(p), secret)
    }
    _touch(list({k.pk: k for k in found.values()}.values()))
    return found


def actor_for(key: ApiKey) -> Actor:
    """The actor a key acts as. A scoped key whose sessions were all deleted stays scoped, to
    nothing: only ``all_sessions`` widens a key."""
    if key.all_sessions:
        return _actor(key, None)
    return _actor(key, frozenset(key.sessions.values_list("name", flat=True)))


def actors_for(keys: Iterable[ApiKey]) -> dict[int, Actor]:
    """``actor_for`` for many keys at once (by key id): one query for the scoped keys' sessions."""
    keys = list(keys)
    scoped = [k.pk for k in keys if not k.all_sessions]
    names: dict[int, set[str]] = {pk: set() for pk in scoped}
    if scoped:
        through = ApiKey.sessions.through.objects.filter(apikey_id__in=scoped)
        for key_id, name in through.values_list("apikey_id", "session__name"):
            names[key_id].add(name)
    return {k.pk: _actor(k, None if k.all_sessions else frozenset(names[k.pk])) for k in keys}


def _actor(key: ApiKey, sessions: frozenset[str] | None) -> Actor:
    agents, worker = (key.serves, key.pk) if key.agents else (frozenset(), None)
    return Actor(key.user, sessions, agents, worker)


def revoke(key: ApiKey) -> None:
    """Revoke ``key``; its open connections are told (a saved key signals them)."""
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
