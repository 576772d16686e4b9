"""Agent workers' side of turns: claim, renew the lease, hand back. The REST door for
workers (``api_turns``) and the WebSocket's ``claim`` frame (``consumers``) call these; see
``domain.turns`` for the rules.

Claims take the oldest open turn of each session, one per session at a time, with
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (workers in many processes never wait on
each other's rows) and under a process lock with SQLite (the embedded default: one process).
A claim of a turn whose lease ran out first ends the lost attempt's run (``agent_lost``), so
the lost worker's later appends are refused: one turn gets one answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.utils import timezone

from sessions_app import dbexec, log, metrics, services
from sessions_app.access import grant_held, visible_to
from sessions_app.conf import setting
from sessions_app.domain import turns as rules
from sessions_app.domain.errors import SessionError
from sessions_app.domain.fold import SessionState
from sessions_app.domain.offsets import format_offset
from sessions_app.domain.turns import TurnState
from sessions_app.models import ApiKey, Session, Turn, is_json_type

if TYPE_CHECKING:
    from sessions_app.access import Actor

logger = logging.getLogger("sessions_app.dispatch")
POLL_SECONDS = 2.0  # a waiting claim looks again this often: a lost wake-up costs no more
BYTE_STREAM = "a byte stream holds no conversation: the message was sent to a stream of bytes"


@dataclass(frozen=True)
class Claimed:
    """A claimed turn, as the worker is told it."""

    turn: Turn
    session: str
    text: str
    messages: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        turn = self.turn
        return {
            "id": turn.pk,
            "session": self.session,
            "message": turn.message,
            "message_offset": format_offset(turn.message_seq),
            "text": self.text,
            "agent": turn.agent,
            "attempt": turn.attempts,
            "run_id": turn.run_id,
            "lease_seconds": setting("TURN_LEASE_SECONDS"),
            "messages": self.messages,
            "input": turn.input or {},
        }


async def claim_waiting(
    actor: Callable[[], Actor],
    agents: list[str],
    worker: str,
    limit: int,
    wait: float,
    stop: asyncio.Event | None = None,
) -> list[Claimed]:
    """``claim``, waiting up to ``wait`` seconds (at most ``TURN_CLAIM_WAIT_MAX``) for a turn:
    woken by the channel layer when turns may be claimed, looking again every
    ``POLL_SECONDS`` anyway. ``actor`` is asked before every look, so a connection's access
    re-check reaches a claim that waits on it; ``stop`` ends the wait (a look under way
    finishes, and what it took is returned)."""
    agents = [a for a in agents if _valid_agent(a)]
    run = executor()
    wait = min(wait, setting("TURN_CLAIM_WAIT_MAX"))
    deadline = time.monotonic() + wait
    wakeups = await _wakeups() if wait > 0 else None
    stop = stop or asyncio.Event()
    while not stop.is_set():
        woken = wakeups.next() if wakeups is not None else asyncio.Event()  # before looking
        who = actor()
        taken = await _look(run, who, agents, worker, limit)
        if taken and not actor().authenticated:
            # The credential was revoked while the look ran (it started with the old one):
            # the turns go back now, not to a closed connection for their lease.
            await run(_hand_back, who, worker, [c.turn.pk for c in taken])
            return []
        left = deadline - time.monotonic()
        if taken or left <= 0:
            return taken
        waits = [asyncio.ensure_future(e.wait()) for e in (woken, stop)]
        try:
            await asyncio.wait(
                waits, timeout=min(left, POLL_SECONDS), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiting in waits:
                waiting.cancel()
    return []


def executor() -> Callable[..., Any]:
    """Where turns' statements run from async code: SQLite takes one writer at a time, so
    there through the log's writer thread; elsewhere on the read threads."""
    return dbexec.run_write if connection.vendor == "sqlite" else dbexec.run_read


_handing_back: set[asyncio.Task[Any]] = set()


async def _look(
    run: Callable[..., Any], who: Actor, agents: list[str], worker: str, limit: int
) -> list[Claimed]:
    """One look for turns. A look that its caller gives up (the connection closed) still
    runs to its end in its thread; what it took then is handed back at once."""
    look = asyncio.ensure_future(run(claim, who, agents, worker, limit))
    try:
        return await asyncio.shield(look)
    except asyncio.CancelledError:

        def hand_back(done: asyncio.Future[list[Claimed]]) -> None:
            if done.cancelled() or done.exception() is not None or not done.result():
                return
            ids = [c.turn.pk for c in done.result()]
            task = asyncio.ensure_future(run(_hand_back, who, worker, ids))
            _handing_back.add(task)
            task.add_done_callback(_handing_back.discard)

        look.add_done_callback(hand_back)
        raise


def _hand_back(who: Actor, worker: str, ids: list[int]) -> None:
    for turn_id in ids:
        release(who, worker, turn_id)


def _valid_agent(name: str) -> bool:
    return (
        0 < len(name) <= 128
        and name.replace("_", "").replace(".", "").replace("-", "").replace("*", "").isalnum()
    )


class Wakeups:
    """This event loop's one listener for "turns may be claimed" (``log.wake_workers``).

    Every waiting claim of the process waits on the same event instead of joining the group
    itself: one channel and one group membership per process, renewed well before the channel
    layer's group expiry, and no receive is ever cancelled.
    """

    RENEW_SECONDS = 600.0

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def next(self) -> asyncio.Event:
        """The event the next wake-up sets (take it before looking for work)."""
        return self.event

    async def start(self) -> None:
        channel = await self.layer.new_channel()
        await self.layer.group_add(log.TURNS_GROUP, channel)
        self.task = asyncio.create_task(self._listen(channel))

    async def _listen(self, channel: str) -> None:
        joined = time.monotonic()
        while True:
            try:
                await self.layer.receive(channel)
            except Exception:  # the layer is down for a moment: claims poll meanwhile
                logger.warning("turn wake-ups: the channel layer failed", exc_info=True)
                await asyncio.sleep(1.0)
            woken, self.event = self.event, asyncio.Event()
            woken.set()
            if time.monotonic() - joined > self.RENEW_SECONDS:
                with contextlib.suppress(Exception):
                    await self.layer.group_add(log.TURNS_GROUP, channel)
                    joined = time.monotonic()


_wakeups_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Wakeups] = (
    weakref.WeakKeyDictionary()
)


async def _wakeups() -> Wakeups | None:
    layer = get_channel_layer()
    if layer is None:
        return None
    loop = asyncio.get_running_loop()
    found = _wakeups_by_loop.get(loop)
    if found is None or found.task is None or found.task.done():
        found = _wakeups_by_loop[loop] = Wakeups(layer)
        await found.start()
    return found


def claimable_agents(actor: Actor, agents: list[str]) -> list[str]:
    """The asked agent names this actor may claim for: any for a user's own sessions; those
    a worker key serves (``*``: any) on every session."""
    if actor.key is not None and actor.agents and "*" not in actor.agents:
        return [a for a in agents if a in actor.agents]
    return agents


_sqlite_claims = threading.Lock()  # SQLite has no SKIP LOCKED: claims in one process in turn


def claim(actor: Actor, agents: list[str], worker: str, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` turns for ``agents``; empty when none is waiting."""
    agents = claimable_agents(actor, agents)
    if not agents or limit < 1:
        return []
    if connection.vendor == "postgresql":
        taken, fenced = _claim(actor, agents, worker, limit)
    else:
        with _sqlite_claims:
            taken, fenced = _claim(actor, agents, worker, limit)
    for session_pk, run_id, message in fenced:
        _end_lost_run(session_pk, run_id, message)
    sessions = _sessions({turn.session_id for turn in taken})
    taken = _without_byte_streams(taken, sessions)
    pks = {turn.session_id for turn in taken}
    if actor.key is not None and actor.agents and taken:
        live = [(pk, s.name) for pk, s in sessions.items() if not s.deleted]
        grant_held(actor.key, live)  # the answers' first publishes
    states = log.fold_sessions(pks) if pks else {}  # every conversation at once
    return [
        _describe(turn, _name(sessions.get(turn.session_id)), states.get(turn.session_id))
        for turn in taken
    ]


class _SessionRow(NamedTuple):
    name: str
    content_type: str
    deleted: bool


def _sessions(pks: set[int]) -> dict[int, _SessionRow]:
    """What a claim needs of its turns' sessions, by one plain statement: building the ORM's
    query and a model per session was a third of a claim's CPU (issue #20's profile)."""
    if not pks:
        return {}
    table = connection.ops.quote_name(Session._meta.db_table)
    marks = ", ".join(["%s"] * len(pks))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, name, content_type, deleted FROM {table} WHERE id IN ({marks})",
            sorted(pks),
        )
        return {
            int(pk): _SessionRow(str(name), str(kind), bool(gone))
            for pk, name, kind, gone in cursor.fetchall()
        }


def _without_byte_streams(taken: list[Turn], sessions: dict[int, _SessionRow]) -> list[Turn]:
    """A turn in a byte stream (left by a version that let a user message reach one) has no
    conversation to fold: it fails with the reason, and the claim goes on with the others."""
    stray = [
        t
        for t in taken
        if (s := sessions.get(t.session_id)) is not None and not is_json_type(s.content_type)
    ]
    if not stray:
        return taken
    Turn.objects.filter(pk__in=[t.pk for t in stray]).update(
        state="failed", reason=BYTE_STREAM, ended_at=timezone.now(),
        lease_until=None, worker="", key_id=None,
    )  # fmt: skip
    metrics.TURNS.labels("failed").inc(len(stray))
    return [t for t in taken if t not in stray]


def _name(session: _SessionRow | None) -> str:
    return session.name if session is not None else ""


def _candidates(actor: Actor, agents: list[str], now: Any, limit: int) -> list[Turn]:
    """The open turns a claim may take, oldest first, locked (SKIP LOCKED) on PostgreSQL.

    Plain SQL: the ORM building this query was a third of the claim's CPU in issue #20's
    dispatch profile. A turn waits while its session has another open turn that is earlier,
    or claimed under a live lease: one NOT EXISTS over the session's turns (an index scan per
    candidate; as two, PostgreSQL planned the lease check as a scan of every turn ever made).
    """
    q = connection.ops.quote_name
    table = q(Turn._meta.db_table)
    when = connection.ops.adapt_datetimefield_value(now)
    marks = ", ".join(["%s"] * len(agents))
    sql = (
        f"SELECT t.* FROM {table} t WHERE t.agent IN ({marks}) AND t.state IN (%s, %s) "
        "AND (t.state = %s OR t.lease_until <= %s) "
        f"AND NOT EXISTS (SELECT 1 FROM {table} u WHERE u.session_id = t.session_id "
        "AND u.state IN (%s, %s) AND u.id <> t.id "
        "AND (u.id < t.id OR (u.state = %s AND u.lease_until > %s)))"
    )
    queued, claimed = TurnState.QUEUED.value, TurnState.CLAIMED.value
    params: list[Any] = [*agents, queued, claimed, queued, when, queued, claimed, claimed, when]
    if not (actor.key is not None and actor.agents):  # a user's own key: their sessions only
        visible = visible_to(actor.user)
        if actor.sessions is not None:
            visible = visible.filter(name__in=actor.sessions)
        try:
            inner, inner_params = visible.values("pk").query.sql_with_params()
        except EmptyResultSet:  # e.g. a key whose scope was emptied: it reaches nothing
            return []
        sql += f" AND t.session_id IN ({inner})"
        params += inner_params
    sql += " ORDER BY t.id LIMIT %s"
    params.append(limit)
    if connection.features.has_select_for_update_skip_locked:
        sql += " FOR UPDATE OF t SKIP LOCKED"
    if connection.vendor == "postgresql":
        # Oldest first, stopping at ``limit``: PostgreSQL otherwise planned a bitmap scan of
        # every open turn, the NOT EXISTS for each, and a sort (1,223 probes and 3-9 ms for
        # 25 turns in issue #20's dispatch benchmark). For this transaction only.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('enable_sort', 'off', true), "
                "set_config('enable_bitmapscan', 'off', true)"
            )
    return list(Turn.objects.raw(sql, params))


def _claim(
    actor: Actor, agents: list[str], worker: str, limit: int
) -> tuple[list[Turn], list[tuple[int, str, str]]]:
    now = timezone.now()
    lease = timedelta(seconds=setting("TURN_LEASE_SECONDS"))
    most = setting("TURN_MAX_ATTEMPTS")
    taken: list[Turn] = []
    fenced: list[tuple[int, str, str]] = []
    with transaction.atomic():
        for turn in _candidates(actor, agents, now, limit):
            if turn.state == TurnState.CLAIMED.value:  # its worker let the lease run out
                metrics.LEASE_EXPIRIES.inc()
                if turn.run_id:
                    gave_up = turn.attempts >= most
                    fenced.append((turn.session_id, turn.run_id, _lost(turn, most, gave_up)))
                if turn.attempts >= most:
                    turn.state, turn.reason, turn.ended_at = "failed", "agent lost", now
                    turn.lease_until, turn.worker, turn.key_id = None, "", None
                    turn.save()
                    metrics.TURNS.labels("failed").inc()
                    continue
            waited = now - (turn.lease_until or turn.created_at)
            turn.attempts += 1
            turn.state = TurnState.CLAIMED.value
            turn.run_id = rules.run_id(turn.pk, turn.attempts)
            turn.worker = worker[:200]
            turn.key_id = actor.key
            turn.lease_until = now + lease
            turn.claimed_at = now
            metrics.TURNS.labels("claimed").inc()
            metrics.CLAIM_LATENCY.observe(max(waited.total_seconds(), 0.0))
            taken.append(turn)
        _mark_claimed(taken)
    return taken, fenced


def _mark_claimed(taken: list[Turn]) -> None:
    """Write the claimed turns: one statement for all of them (a ``save()`` each was a
    tenth of the server's CPU in issue #20's dispatch profile; on PostgreSQL one UPDATE over
    arrays, elsewhere one pipelined batch)."""
    if not taken:
        return
    if connection.vendor == "postgresql" and len(taken) > 1:
        first = taken[0]  # one claim: one worker, key, lease and time for all its turns
        with connection.cursor() as cursor:
            cursor.execute(
                _MARK_ALL_SQL,
                [first.state, first.worker, first.key_id, first.lease_until, first.claimed_at,
                 [t.attempts for t in taken], [t.run_id for t in taken], [t.pk for t in taken]],
            )  # fmt: skip
        return
    sql = (
        f"UPDATE {Turn._meta.db_table} SET state = %s, attempts = %s, run_id = %s, "
        "worker = %s, key_id = %s, lease_until = %s, claimed_at = %s WHERE id = %s"
    )
    when = connection.ops.adapt_datetimefield_value  # SQLite stores them as Django writes them
    rows = [
        (t.state, t.attempts, t.run_id, t.worker, t.key_id, when(t.lease_until),
         when(t.claimed_at), t.pk)
        for t in taken
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


_MARK_ALL_SQL = (
    f"UPDATE {Turn._meta.db_table} AS t SET state = %s, worker = %s, key_id = %s, "
    "lease_until = %s, claimed_at = %s, attempts = v.attempts, run_id = v.run_id "
    "FROM unnest(%s::int[], %s::text[], %s::bigint[]) AS v(attempts, run_id, id) "
    "WHERE t.id = v.id"
)


def _lost(turn: Turn, most: int, gave_up: bool) -> str:
    tail = "no attempts left" if gave_up else "another worker takes the turn"
    return f"the agent worker was lost (attempt {turn.attempts} of {most}); {tail}"


def _end_lost_run(session_pk: int, run_id: str, message: str) -> None:
    """End a lost attempt's run before the next attempt starts: its worker is fenced."""
    from sessions_app import log
    from sessions_app.domain.errors import RunEnded

    events = [
        {"type": "RUN_ERROR", "run": run_id, "data": {"code": rules.LOST, "message": message}}
    ]
    try:
        log.append_sync(services.request(session_pk, events))
    except (RunEnded, SessionError) as exc:  # never started, or ended meanwhile: fenced too
        logger.info("lost run %s was not ended by the claim: %s", run_id, exc)


def _describe(turn: Turn, name: str, state: SessionState | None) -> Claimed:
    history: list[dict[str, Any]] = []
    text = ""
    for message in state.messages.values() if state is not None else ():
        if message.role in ("user", "assistant") and message.text:
            history.append({"role": message.role, "content": message.text})
        if message.id == turn.message:
            text = message.text
            break
    return Claimed(turn, name, text, rules.conversation(history, setting("TURN_CONTEXT_CHARS")))


def _key_active(actor: Actor) -> bool:
    """Whether a worker key is still unrevoked: a socket's actor was authenticated when it
    opened, and a renewal or release may be on its way as the key is revoked. (A user's own
    key claims as its user, ``actor.key`` None: its turns carry no key to check.)"""
    return actor.key is None or ApiKey.objects.filter(pk=actor.key, revoked_at=None).exists()


def renew(actor: Actor, worker: str, ids: list[int]) -> list[int]:
    """Push the lease of the worker's claimed turns ahead; the ids it still holds."""
    if not _key_active(actor):
        return []
    now = timezone.now()
    held = Turn.objects.filter(
        pk__in=ids, state=TurnState.CLAIMED.value, worker=worker[:200], lease_until__gt=now
    ).filter(key_id=actor.key)
    held.update(lease_until=now + timedelta(seconds=setting("TURN_LEASE_SECONDS")))
    return sorted(held.values_list("pk", flat=True))


def release(actor: Actor, worker: str, turn_id: int) -> bool:
    """Hand a claimed turn back (a worker shutting down): its run, if any, ends
    ``agent_lost`` and the turn is offered again. False if the worker no longer holds it."""
    if not _key_active(actor):
        return False
    with transaction.atomic():
        turn = (
            Turn.objects.select_for_update()
            .filter(pk=turn_id, state=TurnState.CLAIMED.value, worker=worker[:200])
            .filter(key_id=actor.key)
            .first()
        )
        if turn is None:
            return False
        run_id, session_pk = turn.run_id, turn.session_id
        turn.state, turn.worker, turn.key_id, turn.lease_until = "queued", "", None, None
        turn.save()
    _end_lost_run(session_pk, run_id, "the agent worker shut down; another worker takes the turn")
    metrics.TURNS.labels("retried").inc()
    async_to_sync(log.wake_workers)([turn.agent])
    return True
