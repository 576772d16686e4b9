"""Turns in the database: made with their message, claimed by agent workers under a lease.

``TurnTracker`` runs inside the log's commit (``log.commit``), like ``runs.RunTracker``: it
sees a user message before its offsets are allocated and applies the session's policy
(queue, steer, interrupt, reject: ``domain.turns``), then creates the turn in the same
transaction, so a message is never without its turn nor a turn without its message. It also
links a run to the turn its RUN_STARTED names (refusing a stale attempt's run) and, when that
run ends, moves the turn on.

What workers call (claim, renew, release) is in ``dispatch``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import connection

from sessions_app import metrics
from sessions_app.conf import setting
from sessions_app.domain import turns as rules
from sessions_app.domain.runs import RunStatus
from sessions_app.domain.turns import TurnFenced, TurnState
from sessions_app.models import Run, Turn

if TYPE_CHECKING:
    from sessions_app.log.requests import AppendRequest, Item

MakeItem = Callable[[dict[str, Any]], "Item"]

logger = logging.getLogger("sessions_app.turns")
OPEN = [TurnState.QUEUED.value, TurnState.CLAIMED.value]


def default_policy() -> rules.Policy:
    return rules.Policy.parse(setting("TURNS"), rules.Policy())


def session_policy(metadata: dict[str, Any]) -> rules.Policy:
    """A session's turn policy; one that no longer parses falls back to the site's default
    (the REST door refuses a bad one when it is set)."""
    default = default_policy()
    try:
        return rules.Policy.parse(metadata.get("turns"), default)
    except Exception:
        logger.warning("session metadata.turns does not parse; using the site default")
        return default


def check_policy(metadata: dict[str, Any]) -> None:
    """Refuse (BadRequest) session metadata whose ``turns`` policy does not parse."""
    rules.Policy.parse(metadata.get("turns"), default_policy())


@dataclass
class _Asked:
    """A user message in the request: where it starts, its id, its text."""

    index: int
    message: str
    text: str


@dataclass
class TurnTracker:
    """Per transaction: user messages become turns; runs that end move their turn on."""

    # (turn, run) -> (attempts, agent) of the turns whose start this transaction checked
    held: dict[tuple[int, str], tuple[int, str]] = dataclasses.field(default_factory=dict)

    # --- before offsets are allocated ------------------------------------------------------

    def plan(
        self, request: AppendRequest, metadata: dict[str, Any], make: MakeItem
    ) -> AppendRequest:
        """The request as it will be written: a steer or a cancel the session's policy adds
        (``make`` turns an event into an item); raises (nothing written) for a rejected
        message or a fenced run."""
        self._check_starts(request)
        asked = _user_messages(request.items)
        if not asked:
            return request
        policy = session_policy(metadata)
        plans: list[tuple[_Asked, str]] = []
        abandon: list[int] = []
        before: list[Item] = []
        after: list[Item] = []
        busy = _open_turn(request.session_pk)
        for message in asked:
            agent = policy.route(message.text)
            if agent is None:
                continue
            decision = rules.on_message(policy, busy)
            if decision.cancel_run:
                event = {"type": "CANCEL", "run": decision.cancel_run}
                before.append(make({**event, "data": {"reason": "interrupt"}}))
            if decision.steer_run:
                data = {"text": message.text, "message": message.message}
                after.append(make({"type": "STEER", "run": decision.steer_run, "data": data}))
            if decision.abandon is not None:
                abandon.append(decision.abandon)
            if decision.create:
                plans.append((message, agent))
                busy = rules.OpenTurn(0, TurnState.QUEUED, None)
        return dataclasses.replace(
            request,
            items=[*before, *request.items, *after],
            turn_plans=[(m.index + len(before), m.message, agent) for m, agent in plans],
            turn_abandon=abandon,
        )

    def _check_starts(self, request: AppendRequest) -> None:
        for item in request.items:
            turn = (item.data or {}).get("turn") if item.type == "RUN_STARTED" else None
            if turn is None:
                continue
            # Plain SQL: a turn's start and end are on every answer's path (issue #20's
            # dispatch profile: the ORM's query building for these was a fifth of the writer).
            found = _select_one(
                f"SELECT state, run_id, attempts, agent FROM {_TURNS} "
                "WHERE id = %s AND session_id = %s",
                [turn if isinstance(turn, int) else -1, request.session_pk],
            )
            if found is not None and tuple(found[:2]) == (TurnState.CLAIMED.value, item.run):
                self.held[(turn, item.run)] = (int(found[2]), str(found[3]))
            else:
                raise TurnFenced(
                    f"run {item.run!r} does not answer turn {turn!r}: the turn is not claimed "
                    "for this run (its claim was lost, or it ended)",
                    run=item.run,
                )

    # --- after offsets are allocated -------------------------------------------------------

    def apply(
        self, request: AppendRequest, first: int, now: Any, ended: list[tuple[Run, Any]]
    ) -> set[str]:
        """Create the request's turns; move on the turns whose run ended (``ended``: each run
        row with its final change, from the run tracker). Returns the agent names that have
        new work for workers."""
        wake: set[str] = set()
        if request.turn_abandon:
            Turn.objects.filter(pk__in=request.turn_abandon, state=TurnState.QUEUED.value).update(
                state=TurnState.ABANDONED.value, reason="interrupted", ended_at=now
            )
            metrics.TURNS.labels("abandoned").inc(len(request.turn_abandon))
        for index, message, agent in request.turn_plans:
            Turn.objects.create(
                session_id=request.session_pk,
                message=message,
                message_seq=first + index,
                agent=agent,
                input=request.turn_input or {},
            )
            metrics.TURNS.labels("queued").inc()
            wake.add(agent)
        for run, change in ended:
            if run.turn_id is not None:
                wake |= self._run_ended(run.turn_id, run.run_id, change, now)
        return wake

    def _run_ended(self, turn_id: int, run_id: str, change: Any, now: Any) -> set[str]:
        where = "WHERE id = %s AND run_id = %s AND state = %s"
        claimed: list[Any] = [turn_id, run_id, TurnState.CLAIMED.value]
        held = self.held.get((turn_id, run_id))  # its start was checked in this transaction
        if held is None:
            found = _select_one(f"SELECT attempts, agent FROM {_TURNS} {where}", claimed)
            if found is None:  # an earlier attempt's run: the turn has moved on
                return set()
            held = (int(found[0]), str(found[1]))
        attempts, agent = held
        state = rules.after_run(
            change.status.value, change.data.get("code"), attempts, setting("TURN_MAX_ATTEMPTS")
        )
        reason = str(change.data.get("message") or change.data.get("reason") or "")[:200]
        values: list[Any]
        if state is TurnState.QUEUED:
            sets, values = "worker = '', key_id = NULL", []
        else:
            sets, values = "ended_at = %s", [connection.ops.adapt_datetimefield_value(now)]
        with connection.cursor() as cursor:
            # Guarded like the read: a turn claimed again meanwhile is another attempt's now.
            cursor.execute(
                f"UPDATE {_TURNS} SET state = %s, reason = %s, lease_until = NULL, {sets} {where}",
                [state.value, reason, *values, *claimed],
            )
            if cursor.rowcount == 0:
                return set()
        metrics.TURNS.labels("retried" if state is TurnState.QUEUED else state.value).inc()
        return {agent}  # it is offered again, or the session's next turn may be now


_TURNS = Turn._meta.db_table


def _select_one(sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _user_messages(items: Any) -> list[_Asked]:
    """User messages whose start, text and end are all in this request (every door sends a
    message whole; one streamed in pieces by a client asks for no answer)."""
    starts = [
        i
        for i, item in enumerate(items)
        if item.type == "TEXT_MESSAGE_START"
        and not item.run
        and (item.data or {}).get("role") == "user"
    ]
    if not starts:
        return []
    events = [
        json.loads(item.body) if item.type.startswith("TEXT_MESSAGE") else {} for item in items
    ]
    found = []
    for index in starts:
        mid = events[index].get("message")
        texts = [
            str(e.get("data", {}).get("delta", ""))
            for e in events
            if e.get("message") == mid and e.get("type") == "TEXT_MESSAGE_CONTENT"
        ]
        if any(e.get("message") == mid and e.get("type") == "TEXT_MESSAGE_END" for e in events):
            found.append(_Asked(index, str(mid), "".join(texts)))
    return found


def _open_turn(session_pk: int) -> rules.OpenTurn | None:
    row = (
        Turn.objects.filter(session_id=session_pk, state__in=OPEN)
        .order_by("-id")
        .values_list("pk", "state", "run_id")
        .first()
    )
    if row is None:
        return None
    pk, state, run_id = row
    running = (
        bool(run_id)
        and Run.objects.filter(
            session_id=session_pk, run_id=run_id, status=RunStatus.RUNNING.value
        ).exists()
    )
    return rules.OpenTurn(pk, TurnState(state), run_id if running else None)
