"""A claim reads the open turns, not the history: on PostgreSQL its oldest-first scan goes
through the open turns' index, however many turns are done and however stale the planner's
statistics (a burst of turns ends before autovacuum analyzes the table)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from sessions_app import dispatch, keys
from sessions_app.access import Actor
from sessions_app.models import Session, Turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.real_engines]

HISTORY = 3000


def _plan(actor: Actor, agents: list[str]) -> str:
    """EXPLAIN ANALYZE of the claim's own statement (rolled back: it locks what it finds)."""
    seen: list[tuple[str, list]] = []

    def keep(execute, sql, params, many, context):
        seen.append((sql, list(params or [])))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(keep):
        dispatch._candidates(actor, agents, timezone.now(), 25)
    sql, params = next((s, p) for s, p in seen if "SKIP LOCKED" in s)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_a_claim_after_a_burst_reads_the_open_turns_not_the_done_ones(alice, make_user):
    sessions = Session.objects.bulk_create(
        [Session(name=f"s-{i}", owner=alice) for i in range(HISTORY + 50)]
    )
    Turn.objects.bulk_create(
        [Turn(session=s, message=f"u-{s.pk}", message_seq=1, agent="noop") for s in sessions]
    )
    with connection.cursor() as cursor:  # statistics taken while every turn was open
        cursor.execute(f"ANALYZE {Turn._meta.db_table}")
    oldest = sorted(t.pk for t in Turn.objects.all())[:HISTORY]
    Turn.objects.filter(pk__in=oldest).update(state="done", ended_at=timezone.now())
    key, _ = keys.create_key(make_user("robot"), "workers", agents="*")
    worker = Actor(key.user, None, frozenset({"*"}), key.pk)

    plan = _plan(worker, ["echo", "noop"])

    assert "sessions_app_open_turns_by_id" in plan, plan
    assert "sessions_app_turn_pkey" not in plan.split("SubPlan")[0], plan
    taken = dispatch.claim(worker, ["echo", "noop"], "w", 25)
    assert len(taken) == 25 and min(c.turn.pk for c in taken) > max(oldest)
