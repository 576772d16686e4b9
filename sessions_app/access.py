"""Who may see and touch which session. An absent and a forbidden session look the same."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core import signing
from django.db import connection
from django.db.models import Q, QuerySet

from sessions_app.domain.errors import Conflict, Forbidden, LimitExceeded, NotFound
from sessions_app.models import Membership, Session, is_json_type

TOKEN_SALT = "sessions_app.token"
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user, optionally limited to some sessions (a signed token, an API key)."""

    user: Any
    sessions: frozenset[str] | None = None  # None: every session the user may see
    # A worker key (``ApiKey.agents``): the agent names it answers for, and the key's id. It
    # reaches a session while it holds one of the session's turns (see ``get_session``).
    agents: frozenset[str] = frozenset()
    key: int | None = None

    @property
    def authenticated(self) -> bool:
        return bool(getattr(self.user, "is_authenticated", False))


def visible_to(user: Any) -> QuerySet[Session]:
    if not getattr(user, "is_authenticated", False):
        return Session.objects.none()
    return Session.objects.filter(
        Q(owner=user) | Q(memberships__user=user), deleted=False
    ).distinct()


def check_name(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH or "\x00" in name:
        raise NotFound("no such session")
    return name


def check_creatable_name(name: str) -> None:
    """Refuse a name kept for the site's own code (``RESERVED_NAME_PREFIXES``).

    Every door that lets a caller name a new session calls this before writing anything; the
    refusal reads like a taken name, so it tells the caller nothing a taken name would not.
    """
    from sessions_app.conf import setting

    if any(name.startswith(prefix) for prefix in setting("RESERVED_NAME_PREFIXES")):
        raise Conflict("a session with this name exists", name=name)


def check_can_create(actor: Actor) -> None:
    """Refuse a new session to an actor limited to some sessions, and to a user at the quota.

    A key (or token) scoped to some sessions acts inside them only: it makes no new ones.
    """
    if actor.sessions is not None:
        raise Forbidden("a key scoped to some sessions cannot create sessions")
    check_quota(actor.user)


def check_quota(user: Any) -> None:
    """Refuse a new session to a user who owns ``MAX_SESSIONS_PER_USER`` already."""
    from sessions_app.conf import setting

    most = setting("MAX_SESSIONS_PER_USER")
    if most is not None and Session.objects.filter(owner=user, deleted=False).count() >= most:
        raise LimitExceeded(
            f"you own {most} sessions, the most allowed; delete some first",
            limit="sessions_per_user",
        )


def in_scope(actor: Actor, name: str) -> bool:
    """Whether ``actor`` is someone, and its credential is not limited to other sessions."""
    return actor.authenticated and (actor.sessions is None or name in actor.sessions)


def decides(actor: Actor, name: str, owner_id: Any, anonymous_prefix: str | None) -> bool | None:
    """Whether ``actor`` may read and write session ``name`` owned by ``owner_id``, when that
    needs no query: an ownerless session (a Durable Streams stream created anonymously) is
    public under ``anonymous_prefix`` and nobody's otherwise; an owner reaches their own. None
    when only a membership can tell (``visible_to``)."""
    if owner_id is None:
        return anonymous_prefix is not None and name.startswith(anonymous_prefix)
    if not in_scope(actor, name):
        return False
    if owner_id == actor.user.pk:
        return True
    return None


def get_session(actor: Actor, name: object, *, events: bool = True) -> Session:
    """The session ``name`` if ``actor`` may read and publish to it; NotFound otherwise.

    ``events``: a door that reads or writes events reaches sessions of events only. A user's
    byte stream (Durable Streams, any other content type) is a session too, to manage and to
    share (``events=False``), but its entries are the caller's bytes: read as events they
    failed every door with a 500, and a user message there made a turn whose claim failed
    every other turn claimed with it.
    """
    name = check_name(name)
    session = None
    if actor.key is not None and actor.agents and actor.authenticated:
        # A worker key mostly reaches a session by the turn it holds there: asked first, one
        # query instead of two on every answer's first publish (issue #20's dispatch profile).
        session = _held_session(actor.key, name)
    if session is None and in_scope(actor, name):
        session = visible_to(actor.user).filter(name=name).first()
    if session is None or (events and not session.is_json):
        raise NotFound("no such session")
    return session


def reachable_by(asked: list[tuple[Actor, list[str]]]) -> list[set[str]]:
    """For each (actor, names) asked: the names ``get_session`` gives that actor, found for all
    of them at once in two queries (three when a worker key is among them), however many are
    asked: the periodic access re-check of every open socket of a worker."""
    return [set(found) for found in _reach(asked)]


def sessions_for(asked: list[tuple[Actor, object]]) -> list[int | NotFound]:
    """For each (actor, name) asked: the primary key of the session ``get_session`` gives,
    or the NotFound it raises, found for all of them at once as ``reachable_by`` finds them:
    the subscribes that arrive together on a worker (a join storm, issue #25)."""
    names = [[name] if isinstance(name, str) and _valid(name) else [] for _, name in asked]
    found = _reach([(actor, n) for (actor, _), n in zip(asked, names, strict=True)])
    return [
        pks[n[0]] if n and n[0] in pks else NotFound("no such session")
        for pks, n in zip(found, names, strict=True)
    ]


def _reach(asked: list[tuple[Actor, list[str]]]) -> list[dict[str, int]]:
    """For each (actor, names): name -> pk of the names ``get_session`` gives that actor."""
    asked = [(actor, names if actor.authenticated else []) for actor, names in asked]
    sessions = _live_sessions({n for _, names in asked for n in names if _valid(n)})
    pks = sorted(pk for pk, _ in sessions.values())
    members = _pairs(Membership, "session_id", pks, "user_id", {a.user.pk for a, _ in asked})
    workers = {a.key for a, _ in asked if a.agents and a.key is not None}
    held = _pairs(Session, "pk", pks, "turns__key_id", workers, turns__state="claimed")
    out = []
    for actor, names in asked:
        allowed = {}
        for name in names:
            pk, owner = sessions.get(name, (None, None))
            mine = owner == actor.user.pk or (pk, actor.user.pk) in members
            if pk is not None and (
                (mine and in_scope(actor, name)) or (actor.agents and (pk, actor.key) in held)
            ):
                allowed[name] = pk
        out.append(allowed)
    return out


def _live_sessions(names: set[str]) -> dict[str, tuple[int, Any]]:
    """Name -> (pk, owner id) of the sessions of events among ``names`` not deleted (what
    ``get_session`` gives: no byte stream)."""
    found: dict[str, tuple[int, Any]] = {}
    columns = ("name", "pk", "owner_id", "content_type")
    for chunk in _chunks(sorted(names)):
        rows = Session.objects.filter(name__in=chunk, deleted=False).values_list(*columns)
        found.update((n, (pk, owner)) for n, pk, owner, kind in rows if is_json_type(kind))
    return found


def _pairs(
    model: Any, left: str, lefts: list[Any], right: str, rights: set[Any], **where: Any
) -> set[tuple[Any, Any]]:
    """The (left, right) pairs of ``model``'s rows with left in ``lefts``, right in ``rights``
    (and ``where``): memberships (session, user), claimed turns (session, key)."""
    found: set[tuple[Any, Any]] = set()
    for chunk in _chunks(lefts) if rights else ():
        for by in _chunks(sorted(rights, key=str)):
            rows = model.objects.filter(**{f"{left}__in": chunk, f"{right}__in": by}, **where)
            found.update(rows.values_list(left, right))
    return found


CHUNK = 5000  # values in one IN (...): SQLite takes at most 32,766 parameters a query


def _chunks(values: list[Any]) -> list[list[Any]]:
    return [values[i : i + CHUNK] for i in range(0, len(values), CHUNK)]


def _valid(name: object) -> bool:
    try:
        check_name(name)
    except NotFound:
        return False
    return True


# (worker key, session name) -> (session pk, when granted): sessions in which a claim this
# process answered gave the key a turn. A WebSocket keeps an answer of ``get_session`` for a
# few seconds (until its next access re-check); a grant stands for that answer on the key's
# sockets here, so that a turn's answer publishes without the lookup (``granted``).
_grants: dict[tuple[int, str], tuple[int, float]] = {}
_GRANTS_MAX = 10_000


def grant_held(key: int, sessions: list[tuple[int, str]]) -> None:
    """Record that worker key ``key`` has just claimed a turn in each of ``sessions`` (pk and
    name of each; none deleted)."""
    now = time.monotonic()
    if len(_grants) + len(sessions) > _GRANTS_MAX:
        _grants.clear()  # nobody asks for a grant older than GRANT_SECONDS: start again
    for pk, name in sessions:
        _grants[(key, name)] = (pk, now)


def granted(actor: Actor, name: object, since: float, seconds: float) -> int | None:
    """The pk of session ``name`` if a claim for ``actor``'s worker key gave it a turn there
    after ``since`` (the asking socket's last access check) and at most ``seconds`` ago: what
    ``get_session`` answered then. None: ask ``get_session``."""
    if actor.key is None or not actor.agents or not actor.authenticated:
        return None
    found = _grants.get((actor.key, name)) if isinstance(name, str) else None
    if found is None or found[1] < since or found[1] + seconds <= time.monotonic():
        return None
    return found[0]


def _held_session(key: int, name: str) -> Session | None:
    """``holding_turn(key).filter(name=name).first()`` as one raw statement: the ORM's query
    building was two thirds of this lookup, itself a fifth of the server's CPU per turn in
    issue #20's dispatch profile (every answer's first publish asks it)."""
    found = Session.objects.raw(_held_sql(), [name, key])
    return next(iter(found), None)


@functools.cache
def _held_sql() -> str:
    from sessions_app.models import Turn

    q = connection.ops.quote_name
    s, t = Session._meta, Turn._meta
    return (
        f"SELECT * FROM {q(s.db_table)} WHERE {q('name')} = %s AND NOT {q('deleted')} "
        f"AND EXISTS (SELECT 1 FROM {q(t.db_table)} WHERE {q('session_id')} = "
        f"{q(s.db_table)}.{q('id')} AND {q('state')} = 'claimed' AND {q('key_id')} = %s)"
    )


def holding_turn(key: int) -> QuerySet[Session]:
    """Sessions in which worker key ``key`` holds a claimed turn: it answers there, and only
    while the claim lasts (a lost lease or the turn's end takes the session away)."""
    return Session.objects.filter(
        deleted=False, turns__state="claimed", turns__key_id=key
    ).distinct()


# --- short-lived signed tokens for browsers ----------------------------------------------


def mint_token(user: Any, sessions: list[str] | None = None) -> str:
    """A signed token naming ``user`` and, optionally, the only sessions it opens."""
    return signing.dumps({"u": user.pk, "s": sessions}, salt=TOKEN_SALT, compress=True)


def read_token(token: str, max_age: float) -> tuple[Any, frozenset[str] | None]:
    """The user primary key and session names a token carries; BadSignature if invalid/old."""
    data = signing.loads(token, salt=TOKEN_SALT, max_age=timedelta(seconds=max_age))
    sessions = data.get("s")
    return data["u"], (frozenset(sessions) if sessions is not None else None)


def active_user(pk: Any) -> Any:
    """The active user with primary key ``pk``, or None."""
    from django.contrib.auth import get_user_model

    return get_user_model()._default_manager.filter(pk=pk, is_active=True).first()


def active_users(pks: list[Any]) -> dict[Any, Any]:
    """``active_user`` for many at once: the active users among ``pks``, by primary key."""
    from django.contrib.auth import get_user_model

    found: dict[Any, Any] = {}
    for chunk in _chunks(sorted(set(pks), key=str)):
        found.update(
            (u.pk, u)
            for u in get_user_model()._default_manager.filter(pk__in=chunk, is_active=True)
        )
    return found
