"""Ratings in the database, kept in step with the log inside the appending transaction.

``FeedbackTracker`` is the third tracker of the commit, beside ``runs.RunTracker`` and
``turns.TurnTracker``: when an append carries a ``sessions.FEEDBACK`` event it writes the
rating to ``models.Feedback`` in the same transaction, one row per (session, message, user),
a later rating by the same user replacing the earlier one as the fold does. The admin filters
ratings from that table; the log stays the truth (``backfill`` rebuilds rows from it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sessions_app.domain.judgement import FEEDBACK, RATINGS
from sessions_app.models import Entry, Feedback, Run

if TYPE_CHECKING:
    from sessions_app.log.requests import AppendRequest, Item

# How many of a session's newest message starts are read to find the rated one (a rating
# is nearly always of a recent answer; past that the row keeps no run or agent).
LOOKBACK = 500


def rating_of(item: Item) -> dict[str, Any] | None:
    """The rating an item carries (``data.value`` of a ``sessions.FEEDBACK`` event), or None."""
    data = item.data or {}
    if item.type != "CUSTOM" or data.get("name") != FEEDBACK:
        return None
    value = data.get("value")
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("message"), str)
        or not isinstance(value.get("user"), str)
        or value.get("rating") not in RATINGS
    ):
        return None
    return value


@dataclass
class FeedbackTracker:
    """Per transaction: the rated messages' runs and agents it has looked up."""

    answered_by: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)

    def apply(self, request: AppendRequest, first_seq: int, now: datetime) -> None:
        """Record each rating of the request (its checks were the feedback door's)."""
        pk = request.session_pk
        for seq, item in enumerate(request.items, start=first_seq):
            value = rating_of(item)
            if value is not None:
                run_id, agent = self._answered_by(pk, value["message"])
                record(pk, value, seq, now, run_id, agent)

    def _answered_by(self, pk: int, message: str) -> tuple[str, str]:
        key = (pk, message)
        if key not in self.answered_by:
            starts = (
                Entry.objects.filter(session_id=pk, type="TEXT_MESSAGE_START")
                .exclude(run="")
                .order_by("-seq")
                .values_list("run", "body")[:LOOKBACK]
            )
            self.answered_by[key] = find_answer(message, starts, pk)
        return self.answered_by[key]


def find_answer(message: str, starts: Iterable[tuple[str, Any]], pk: int) -> tuple[str, str]:
    """The run and agent of ``message`` among message-start entries ``(run, body)``."""
    for run_id, body in starts:
        event = json.loads(bytes(body))
        if isinstance(event, dict) and event.get("message") == message:
            agent = event.get("agent")
            if not isinstance(agent, str) or not agent:
                found = Run.objects.filter(session_id=pk, run_id=run_id).values_list("agent")
                agent = next(iter(found), ("",))[0]
            return run_id, agent
    return "", ""


def record(
    pk: int, value: Mapping[str, Any], seq: int, when: datetime, run_id: str, agent: str
) -> None:
    """Write one rating: the user's row for the message takes it whole (no comment in the new
    rating: no comment kept), unless the row already holds a later one."""
    fields = {
        "rating": value["rating"],
        "comment": value.get("comment") or "",
        "correction": value.get("correction") or "",
        "run_id": run_id[:128],
        "agent": agent[:128],
        "seq": seq,
        "rated_at": when,
    }
    keys = {"session_id": pk, "message": value["message"], "user": value["user"][:150]}
    if not Feedback.objects.filter(**keys, seq__lt=seq).update(**fields):
        if not Feedback.objects.filter(**keys).exists():
            Feedback.objects.create(**keys, **fields)
