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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import connection

from sessions_app import metrics
from sessions_app.conf import setting
from sessions_app.domain import turns as rules
from sessions_app.domain.runs import RunStatus
from sessions_app.domain.turns import TurnFenced, TurnState
from sessions_app.models import Run, Turn
from sessions_app.rows import insert_rows

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
class _Ending:
    """A turn whose run ended in this batch, to be moved on by ``flush``."""

    request: AppendRequest  # told the agent that has new work (``turn_wake``)
    turn: int
    run: str
    status: str
    code: Any
    reason: str
    held: tuple[int, str] | None  # (attempts, agent), when this batch read them


@dataclass
class TurnTracker:
    """Per transaction: user messages become turns; runs that end move their turn on.

    The turns a batch makes and moves on are written when the commit asks (``flush``): one
    INSERT for the new turns, one UPDATE for the ended ones, not a statement each.
    """

    # (turn, run) -> (attempts, agent) of the turns whose start this transaction checked
    held: dict[tuple[int, str], tuple[int, str]] = dataclasses.field(default_factory=dict)
    # turn -> (session, state, run, attempts, agent), read for the whole batch (``prefetch``)
    found: dict[int, tuple[int, str, str, int, str]] = dataclasses.field(default_factory=dict)
    making: list[Turn] = dataclasses.field(default_factory=list)
    ending: list[_Ending] = dataclasses.field(default_factory=list)
    ended: set[tuple[int, str]] = dataclasses.field(default_factory=set)  # (turn, run)

    def prefetch(self, requests: Sequence[AppendRequest]) -> None:
        """Read the turns the batch's answers start (their RUN_STARTED names them) with one
        statement, instead of one each (the commit calls it with the sessions locked)."""
        read = self.prefetch_read(requests)
        if read is not None:
            with connection.cursor() as cursor:
                cursor.execute(*read)
                self.prefetched(list(cursor.fetchall()))

    def prefetch_read(self, requests: Sequence[AppendRequest]) -> tuple[str, list[Any]] | None:
        """The statement ``prefetch`` reads with (None: nothing worth a statement), for a
        caller that sends it together with others; its rows go to ``prefetched``."""
        wanted = sorted(
            {
                turn
                for request in requests
                for item in request.items
                if item.type == "RUN_STARTED"
                and isinstance(turn := (item.data or {}).get("turn"), int)
                and turn not in self.found
            }
        )
        if len(wanted) < 2:
            return None
        return _turns_sql("id, session_id, state, run_id, attempts, agent", len(wanted)), wanted

    def prefetched(self, rows: list[tuple[Any, ...]]) -> None:
        for pk, session, state, run_id, attempts, agent in rows:
            self.found[int(pk)] = (int(session), str(state), str(run_id), int(attempts),
                                   str(agent))  # fmt: skip

    # --- before offsets are allocated ------------------------------------------------------

    def plan(
        self,
        request: AppendRequest,
        metadata: dict[str, Any],
        make: MakeItem,
        flush: Callable[[], None],
    ) -> AppendRequest:
        """The request as it will be written: a steer or a cancel the session's policy adds
        (``make`` turns an event into an item); raises (nothing written) for a rejected
        message or a fenced run. ``flush`` writes what the batch changed so far, before the
        session's open turn and its run are read."""
        self._check_starts(request)
        asked = _user_messages(request.items)
        if not asked:
            return request
        flush()
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
            found = self._turn(turn, request.session_pk)
            if (
                (turn, item.run) not in self.ended
                and found is not None
                and tuple(found[:2]) == (TurnState.CLAIMED.value, item.run)
            ):
                self.held[(turn, item.run)] = (int(found[2]), str(found[3]))
            else:
                raise TurnFenced(
                    f"run {item.run!r} does not answer turn {turn!r}: the turn is not claimed "
                    "for this run (its claim was lost, or it ended)",
                    run=item.run,
                )

    def _turn(self, turn: Any, session_pk: int) -> tuple[Any, ...] | None:
        """(state, run, attempts, agent) of the session's turn, as this batch read it."""
        if isinstance(turn, int) and turn in self.found:
            session, *rest = self.found[turn]
            return tuple(rest) if session == session_pk else None
        # Plain SQL: a turn's start and end are on every answer's path (issue #20's
        # dispatch profile: the ORM's query building for these was a fifth of the writer).
        return _select_one(
            f"SELECT state, run_id, attempts, agent FROM {_TURNS} "
            "WHERE id = %s AND session_id = %s",
            [turn if isinstance(turn, int) else -1, session_pk],
        )

    # --- after offsets are allocated -------------------------------------------------------

    def apply(
        self, request: AppendRequest, first: int, now: Any, ended: list[tuple[Run, Any]]
    ) -> set[str]:
        """Create the request's turns; move on the turns whose run ended (``ended``: each run
        row with its final change, from the run tracker). Returns the agent names that have
        new work for workers now; ``flush`` adds those of the turns it moves on."""
        wake: set[str] = set()
        if request.turn_abandon:
            Turn.objects.filter(pk__in=request.turn_abandon, state=TurnState.QUEUED.value).update(
                state=TurnState.ABANDONED.value, reason="interrupted", ended_at=now
            )
            metrics.TURNS.labels("abandoned").inc(len(request.turn_abandon))
        for index, message, agent in request.turn_plans:
            self.making.append(
                Turn(
                    session_id=request.session_pk,
                    message=message,
                    message_seq=first + index,
                    agent=agent,
                    input=request.turn_input or {},
                )
            )
            metrics.TURNS.labels("queued").inc()
            wake.add(agent)
        for run, change in ended:
            if run.turn_id is not None:
                reason = str(change.data.get("message") or change.data.get("reason") or "")
                self.ending.append(
                    _Ending(
                        request, run.turn_id, run.run_id, change.status.value,
                        change.data.get("code"), reason[:200],
                        self.held.get((run.turn_id, run.run_id)),
                    )
                )  # fmt: skip
                self.ended.add((run.turn_id, run.run_id))
        return wake

    def flush(self, now: Any) -> None:
        """Write the batch's new turns (one INSERT) and move on the turns whose run ended (one
        UPDATE), each guarded: a turn claimed again meanwhile is another attempt's now."""
        making, self.making = self.making, []
        insert_rows(making)
        ending, self.ending = self.ending, []
        if not ending:
            return
        self._read_held(ending)
        moves = []
        for end in ending:
            if end.held is None:  # an earlier attempt's run: the turn has moved on
                continue
            attempts, _ = end.held
            state = rules.after_run(end.status, end.code, attempts, setting("TURN_MAX_ATTEMPTS"))
            moves.append((end, state))
        moved = _move_turns([(end.turn, end.run, state, end.reason) for end, state in moves], now)
        for end, state in moves:
            if end.turn in moved:
                assert end.held is not None
                metrics.TURNS.labels("retried" if state is TurnState.QUEUED else state.value).inc()
                end.request.turn_wake.add(end.held[1])  # offered again, or the next turn's

    def _read_held(self, ending: list[_Ending]) -> None:
        """(attempts, agent) of the claimed turns of runs that ended without their start in
        this batch: one statement for them all."""
        wanted = [end for end in ending if end.held is None]
        if not wanted:
            return
        claimed = _select_turns(
            "id, run_id, attempts, agent", [end.turn for end in wanted], TurnState.CLAIMED
        )
        rows = {(int(pk), str(run)): (int(n), str(agent)) for pk, run, n, agent in claimed}
        for end in wanted:
            end.held = rows.get((end.turn, end.run))


_TURNS = Turn._meta.db_table


def _select_turns(
    columns: str, ids: list[int], state: TurnState | None = None
) -> list[tuple[Any, ...]]:
    """``columns`` of the turns ``ids`` (those in ``state`` only, if given): one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            _turns_sql(columns, len(ids), state is not None),
            [*([state.value] if state is not None else []), *ids],
        )
        return list(cursor.fetchall())


def _turns_sql(columns: str, count: int, in_state: bool = False) -> str:
    where = "state = %s AND " if in_state else ""
    return f"SELECT {columns} FROM {_TURNS} WHERE {where}id IN ({', '.join(['%s'] * count)})"


def _move_turns(moves: list[tuple[int, str, TurnState, str]], now: Any) -> set[int]:
    """Set each (turn, run, state, reason) where the turn is still claimed for that run; the
    turns moved. A turn offered again loses its worker; one that ended gets its end time."""
    if not moves:
        return set()
    when = connection.ops.adapt_datetimefield_value(now)
    claimed = TurnState.CLAIMED.value
    with connection.cursor() as cursor:
        if len(moves) > 1 and connection.vendor == "postgresql":
            cursor.execute(
                _MOVE_ALL_SQL,
                [when, [m[0] for m in moves], [m[1] for m in moves],
                 [m[2].value for m in moves], [m[3] for m in moves],
                 [m[2] is TurnState.QUEUED for m in moves], claimed],
            )  # fmt: skip
            return {int(row[0]) for row in cursor.fetchall()}
        moved = set()
        for turn, run, state, reason in moves:
            if state is TurnState.QUEUED:
                sets, values = "worker = '', key_id = NULL", []
            else:
                sets, values = "ended_at = %s", [when]
            cursor.execute(
                f"UPDATE {_TURNS} SET state = %s, reason = %s, lease_until = NULL, {sets} "
                "WHERE id = %s AND run_id = %s AND state = %s",
                [state.value, reason, *values, turn, run, claimed],
            )
            if cursor.rowcount:
                moved.add(turn)
        return moved


_MOVE_ALL_SQL = (
    f"UPDATE {_TURNS} AS t SET state = v.state, reason = v.reason, lease_until = NULL, "
    "worker = CASE WHEN v.again THEN '' ELSE t.worker END, "
    "key_id = CASE WHEN v.again THEN NULL ELSE t.key_id END, "
    "ended_at = CASE WHEN v.again THEN t.ended_at ELSE %s END "
    "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::boolean[]) "
    "AS v(id, run_id, state, reason, again) "
    "WHERE t.id = v.id AND t.run_id = v.run_id AND t.state = %s RETURNING t.id"
)


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
