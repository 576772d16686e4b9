"""The demo site's traffic source for mlexec's cost curve: one agent's runs in the session log.

``MLEXEC_APP = {"TRAFFIC_SOURCE": "config.traffic.measured"}`` (config/settings.py). mlexec
asks with a project's agent name; this reads sessions_app's rows (neither app imports the
other; the site may import both):

- calls a month: the agent's runs started in the last 30 days (sub-agent runs included: each
  one is a call; failed and cancelled runs too, they were billed);
- mean input and output tokens and mean API cost per call: over those runs' ``usage``
  (``sessions.USAGE`` reports summed per run); runs that reported no usage, or no such field,
  are left out of that mean (None when none reported it). Costs are averaged whatever their
  currency: keep one currency per agent;
- rated conversations: what ``manage.py sessions export-dataset --agent <name> --min-rating up
  --corrections`` would keep today (before deduplication), counted with the export's own
  reader, so it reads every session of the agent (a fold each: about 0.2 ms a session on
  PostgreSQL, 2,000 sessions in 0.3 to 0.45 s).

The answer is cached for ``CACHE_SECONDS`` (the default cache), so page views do not repeat
that scan; a month's traffic does not move in a minute.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.core.cache import cache
from django.db.models import Avg, Count, FloatField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from mlexec_app.methodology.cost import Traffic
from sessions_app.domain.dataset import Filters, conversation
from sessions_app.export import Options, folds
from sessions_app.models import Run

WINDOW = timedelta(days=30)  # one month of traffic, as the cost curve counts a month
CACHE_SECONDS = 60
NOTHING = "none"  # cached for an agent without traffic (None means "not cached")


def measured(agent: str) -> Traffic | None:
    """The traffic of ``agent`` over the last 30 days, or None when it made no call."""
    key = "config.traffic:" + hashlib.sha256(agent.encode()).hexdigest()
    found = cache.get(key)
    if found is None:
        found = _measure(agent) or NOTHING
        cache.set(key, found, CACHE_SECONDS)
    return None if found == NOTHING else found


def _measure(agent: str) -> Traffic | None:
    runs = Run.objects.filter(agent=agent, started_at__gte=timezone.now() - WINDOW)
    figures = runs.aggregate(
        calls=Count("pk"),
        input_tokens=Avg(Cast(KT("usage__input_tokens"), FloatField())),
        output_tokens=Avg(Cast(KT("usage__output_tokens"), FloatField())),
        cost=Avg(Cast(KT("usage__cost"), FloatField())),
    )
    if not figures["calls"]:
        return None
    return Traffic(
        calls_per_month=float(figures["calls"]),
        mean_input_tokens=figures["input_tokens"],
        mean_output_tokens=figures["output_tokens"],
        api_cost_per_call=figures["cost"],
        rated_conversations=rated_conversations(agent),
    )


def rated_conversations(agent: str) -> int:
    """Conversations of ``agent`` rated up (or corrected) that an export would keep today."""
    filters = Filters(agent=agent, min_rating="up", corrections=True)
    return sum(
        1 for _name, _created, state in folds(Options(filters=filters))
        if conversation(state, filters) is not None
    )  # fmt: skip
