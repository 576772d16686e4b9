"""Revocation reaches open connections: a removed member, a revoked or re-scoped API key and a
deactivated user stop reading and writing within a bounded time, on every worker.

Two ways, because a channel-layer broadcast is at-most-once:

- fast: when a membership, an API key or a user changes, or a user logs out (model signals
  after the commit, Django's ``user_logged_out``),
  ``access.changed`` goes to the group of the user concerned; that user's sockets and long-lived
  HTTP streams, on whatever worker, ask again at once;
- safe: every connection asks again every ``ACCESS_RECHECK_SECONDS`` anyway (a lost
  broadcast, a change made by a queryset ``update()`` that sends no signal).

Asking again goes through the same resolvers as connecting did (``credentials.actor_for_key``
for a key, ``access.active_user`` for a token or cookie, and for a cookie
``credentials.logins_held``, a read-only twin of the check Django's ``get_user`` makes of
a cookie: a logout or a password change ends the connections that rode on that login, and
only those; then
``access.get_session`` or the door's own check), so it can never disagree with them. The
periodic check of a worker's sockets asks their batch versions, next to them
(``keys.authenticate_many``, ``keys.actors_for``, ``access.active_users``,
``access.reachable_by``, ``credentials.logins_held``): a fixed number of queries per worker
and interval (with Django's ``db`` session engine; others load each cookie login), however many
sockets are open (it was a few per socket: at 10,000 sockets it held the database threads that
connects need).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import AnonymousUser
from django.db import transaction

from sessions_app import credentials, dbexec, keys, log
from sessions_app.access import Actor, active_user, active_users, get_session, reachable_by
from sessions_app.conf import setting
from sessions_app.domain.errors import SessionError, Unavailable

logger = logging.getLogger(__name__)

ACCESS_CHANGED = "access.changed"


def user_group(user_pk: Any) -> str:
    """The channel-layer group of every open connection acting as user ``user_pk``."""
    return f"sessions_app.u{user_pk}"


# --- asking again ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """How a long-lived connection was let in, kept to ask again later."""

    actor: Actor
    api_key: str | None = None  # the key's text: asked again (revoked, re-scoped, user gone)
    login: str | None = None  # the session cookie's key: asked again (logged out, password)


def current_actor(grant: Grant) -> Actor:
    """Who the connection acts as now (unauthenticated once its credential is revoked)."""
    if grant.api_key is not None:
        return credentials.actor_for_key(grant.api_key) or Actor(AnonymousUser())
    user = active_user(grant.actor.user.pk) if grant.actor.authenticated else None
    if user is not None and grant.login is not None:  # logged out, or the password changed
        user = user if credentials.logins_held([(grant.login, user)]) else None
    return Actor(user or AnonymousUser(), grant.actor.sessions)


Reach = Callable[[Actor, str], object]  # raises a SessionError when the actor may not


def reachable(
    grant: Grant, names: Iterable[str], reach: Reach = get_session
) -> tuple[Actor, set[str]]:
    """The connection's actor now, and which of ``names`` it may still read and write."""
    actor = current_actor(grant)
    allowed = set()
    for name in names if actor.authenticated else ():
        try:
            reach(actor, name)
        except Unavailable:
            raise
        except SessionError:
            continue
        allowed.add(name)
    return actor, allowed


def socket_grant(scope: dict[str, Any], actor: Actor) -> Grant:
    """A WebSocket's grant: its ``Authorization: Bearer`` is an API key (``sessions_app.auth``);
    without a bearer or token its user came from the session cookie, whose login it keeps."""
    bearer = scope.get("session_actor") is not None  # an API key or a signed token
    login = credentials.login_of(scope.get("session")) if not bearer else None
    return Grant(actor, credentials.scope_bearer(scope), login)


# --- telling the workers -----------------------------------------------------------------------


def notify(*user_pks: Any, ended: str | None = None) -> None:
    """After the current transaction commits, tell these users' connections to ask again;
    ``ended``: a login that is over (``_login_digest`` of its session key), so the
    connections riding on it close without asking."""
    pks = sorted({pk for pk in user_pks if pk is not None})
    if pks:
        transaction.on_commit(lambda: _broadcast(pks, ended))


def _broadcast(pks: list[Any], ended: str | None = None) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # called from async code (a sync ORM call allowed there): do not block its loop
        asyncio.ensure_future(_send(layer, pks, ended))
        return
    async_to_sync(_send)(layer, pks, ended)


async def _send(layer: Any, pks: list[Any], ended: str | None = None) -> None:
    message: dict[str, Any] = {"type": ACCESS_CHANGED}
    if ended is not None:
        message["ended"] = ended
    for pk in pks:
        try:
            await layer.group_send(user_group(pk), message)
        except Exception:  # at most once anyway: the periodic re-check is the safety net
            logger.warning("could not tell user %s's connections to ask again", pk, exc_info=True)


def ended_here(grant: Grant | None, message: dict[str, Any]) -> bool:
    """Whether an ``access.changed`` message ends the login ``grant`` rode on. (Django sends
    ``user_logged_out`` before it flushes the session: asked at once, the login would still
    hold.)"""
    ended = message.get("ended")
    if grant is None or grant.login is None or not isinstance(ended, str):
        return False
    return hmac.compare_digest(ended, _login_digest(grant.login))


def _login_digest(login: str) -> str:
    """What the channel layer carries of an ended login: not the cookie's secret itself."""
    return hashlib.sha256(login.encode()).hexdigest()


def _membership_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    notify(instance.user_id)


def _key_changed(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    if not created:
        notify(instance.user_id)


def _key_scope_changed(sender: Any, instance: Any, action: str, pk_set: Any, **kwargs: Any) -> None:
    from sessions_app.models import ApiKey

    if not action.startswith("post_"):
        return
    if isinstance(instance, ApiKey):
        notify(instance.user_id)
    elif pk_set:  # changed from the session's side: pk_set holds keys
        notify(*ApiKey.objects.filter(pk__in=pk_set).values_list("user_id", flat=True))


def _user_saved(
    sender: Any, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any
) -> None:
    if created:
        return
    # Deactivated, or a new password (which ends the user's other logins): ``set_password``
    # keeps the raw password on the user until its save is over. A password written another
    # way is found by the periodic check.
    new_password = getattr(instance, "_password", None) is not None or (
        update_fields is not None and "password" in update_fields
    )
    if not getattr(instance, "is_active", True) or new_password:
        notify(instance.pk)


def _logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    login = credentials.login_of(session)
    # ``alogout`` without ``request.auser`` (Django's test client) names no user: the
    # session still does.
    pk = user.pk if user is not None else credentials.user_of(session) if login else None
    notify(pk, ended=_login_digest(login) if login else None)


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    notify(instance.pk)


def connect_signals() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from sessions_app.models import ApiKey, Membership

    uid = "sessions_app.revocation."
    post_delete.connect(_membership_deleted, sender=Membership, dispatch_uid=uid + "membership")
    post_save.connect(_key_changed, sender=ApiKey, dispatch_uid=uid + "key")
    post_delete.connect(_key_changed, sender=ApiKey, dispatch_uid=uid + "key_deleted")
    m2m_changed.connect(
        _key_scope_changed, sender=ApiKey.sessions.through, dispatch_uid=uid + "key_scope"
    )
    user = get_user_model()
    post_save.connect(_user_saved, sender=user, dispatch_uid=uid + "user")
    post_delete.connect(_user_deleted, sender=user, dispatch_uid=uid + "user_deleted")
    user_logged_out.connect(_logged_out, dispatch_uid=uid + "logged_out")


# --- WebSockets: the periodic re-check ---------------------------------------------------------

_followers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakSet[Any]] = (
    weakref.WeakKeyDictionary()
)
_tasks: set[asyncio.Task[None]] = set()


def follow(consumer: Any) -> None:
    """Ask again, every ``ACCESS_RECHECK_SECONDS``, for ``consumer``'s subscriptions
    (``consumer.grant``, ``consumer.subscriptions``; the answer goes to
    ``consumer.access_checked``)."""
    loop = asyncio.get_running_loop()
    if loop not in _followers:
        _followers[loop] = weakref.WeakSet()
        task = loop.create_task(_watch(loop))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    _followers[loop].add(consumer)


def current_actors(grants: list[Grant]) -> list[Actor]:
    """``current_actor`` of each grant, for all of them at once (a fixed number of queries)."""
    by_text = keys.authenticate_many(g.api_key for g in grants if g.api_key is not None)
    by_key = keys.actors_for({k.pk: k for k in by_text.values()}.values())
    tokens = [g.actor.user.pk for g in grants if g.api_key is None and g.actor.authenticated]
    users = active_users(tokens) if tokens else {}
    logins = [
        (g.login, users[g.actor.user.pk])
        for g in grants
        if g.login is not None and g.api_key is None and g.actor.user.pk in users
    ]
    held = credentials.logins_held(logins) if logins else set()
    out = []
    for grant in grants:
        if grant.api_key is not None:
            key = by_text.get(grant.api_key)
            out.append(by_key[key.pk] if key is not None else Actor(AnonymousUser()))
            continue
        user = users.get(grant.actor.user.pk) if grant.actor.authenticated else None
        if grant.login is not None and grant.login not in held:  # logged out meanwhile
            user = None
        out.append(Actor(user or AnonymousUser(), grant.actor.sessions))
    return out


def _check_all(work: list[tuple[Grant, list[str]]]) -> list[tuple[Actor, set[str]]]:
    """``reachable`` (with ``get_session``) for every socket of a worker at once."""
    actors = current_actors([grant for grant, _ in work])
    allowed = reachable_by([(actor, names) for actor, (_, names) in zip(actors, work, strict=True)])
    return list(zip(actors, allowed, strict=True))


async def check(loop: asyncio.AbstractEventLoop) -> None:
    """Ask again for every authenticated socket of ``loop``, in one trip to the database
    and a fixed number of queries (``_check_all``)."""
    consumers = [c for c in list(_followers.get(loop, ())) if getattr(c, "grant", None)]
    if not consumers:
        return
    work = [(c.grant, list(c.subscriptions.subs)) for c in consumers]
    answers = await dbexec.run_read(_check_all, work)
    for consumer, (_, names), (actor, allowed) in zip(consumers, work, answers, strict=True):
        try:
            await consumer.access_checked(actor, names, allowed)
        except Exception:  # e.g. the client went away meanwhile; its disconnect cleans up
            logger.debug("could not apply an access check", exc_info=True)


async def _watch(loop: asyncio.AbstractEventLoop) -> None:
    while True:
        await asyncio.sleep(setting("ACCESS_RECHECK_SECONDS"))
        try:
            await check(loop)
        except Exception:  # a database outage: keep what is open, ask again next time
            logger.debug("access re-check failed", exc_info=True)


# --- long-lived HTTP streams -------------------------------------------------------------------


class Watch:
    """Whether the reader of a long-lived HTTP stream may still read its session: asked again
    every ``ACCESS_RECHECK_SECONDS``, and at once when its waiter hears ``access.changed``."""

    def __init__(self, grant: Grant, name: str, reach: Reach = get_session) -> None:
        self.grant, self.name, self.reach = grant, name, reach
        authenticated = grant.actor.authenticated
        self.groups = (user_group(grant.actor.user.pk),) if authenticated else ()
        self.due = time.monotonic() + setting("ACCESS_RECHECK_SECONDS")
        self.heard = False
        self.ended = False  # its login ended (a logout): no need to ask

    def seconds_left(self) -> float:
        """Seconds until the next periodic check (a waiter waits no longer than this)."""
        return max(0.0, self.due - time.monotonic())

    async def allowed(self) -> bool:
        """False once the reader may no longer read the session (an anonymous reader of a
        public stream has nothing to revoke)."""
        if self.ended:
            return False
        if not self.groups or (not self.heard and time.monotonic() < self.due):
            return True
        self.heard = False
        self.due = time.monotonic() + setting("ACCESS_RECHECK_SECONDS")
        try:
            _, allowed = await dbexec.run_read(reachable, self.grant, [self.name], self.reach)
        except Unavailable:  # the database is away: keep the stream, ask again next time
            return True
        return self.name in allowed


class Waiter(log.Waiter):
    """The log's waiter that also hears its reader's ``access.changed`` (``watch.heard``)."""

    def __init__(self, session_pk: int, watch: Watch | None = None, *groups: str) -> None:
        super().__init__(session_pk, *groups, *(watch.groups if watch else ()))
        self.watch = watch

    async def wait(self, seconds: float) -> bool:
        if self.watch is not None and self.watch.groups:
            seconds = min(seconds, self.watch.seconds_left())
        if self.channel is None:
            await asyncio.sleep(seconds)
            return False
        try:
            message = await asyncio.wait_for(self.layer.receive(self.channel), seconds)
        except TimeoutError:
            return False
        if self.watch is not None and message.get("type") == ACCESS_CHANGED:
            self.watch.heard = True
            self.watch.ended = self.watch.ended or ended_here(self.watch.grant, message)
        return True
