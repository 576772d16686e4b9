"""Prometheus metrics of the session log (prometheus-client, in the ``sessions`` extra).

Counters and histograms are per process: scrape every worker (each is its own target), or
set ``PROMETHEUS_MULTIPROC_DIR`` as prometheus-client documents for several processes on one
host. Run counts by status come from the database at scrape time, so every worker reports
the same, correct numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

try:
    from prometheus_client import REGISTRY, Counter, Gauge, Histogram
    from prometheus_client.core import GaugeMetricFamily
except ImportError:  # pragma: no cover - the extra is not installed: metrics are no-ops
    REGISTRY = None  # type: ignore[assignment]


class _Noop:
    def labels(self, *args: Any, **kwargs: Any) -> _Noop:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


def _make(kind: Any, name: str, doc: str, **kwargs: Any) -> Any:
    return kind(name, doc, **kwargs) if REGISTRY is not None else _Noop()


if REGISTRY is not None:
    APPENDED = _make(Counter, "sessions_entries_appended", "Entries appended to session logs.")
    BATCH_SIZE = _make(
        Histogram,
        "sessions_commit_entries",
        "Entries per group-commit transaction.",
        buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
    )
    COMMIT_SECONDS = _make(
        Histogram, "sessions_commit_seconds", "Time of one group-commit transaction."
    )
    DELIVERED = _make(
        Counter, "sessions_entries_delivered", "Entries sent to WebSocket subscribers."
    )
    REPLAYED = _make(
        Counter, "sessions_entries_replayed", "Entries sent from history (replay, resume)."
    )
    RESUMES = _make(Counter, "sessions_resumes", "Subscriptions that resumed from an offset.")
    GAP_FILLS = _make(
        Counter,
        "sessions_gap_fills",
        "Notifications that needed a database read (lost, late, large).",
    )
    SOCKETS = _make(Gauge, "sessions_websockets", "Open WebSocket connections.")
    SUBSCRIPTIONS = _make(Gauge, "sessions_subscriptions", "Active session subscriptions.")
    CONTROL_ACKS = _make(
        Counter,
        "sessions_control_acks",
        "Control acknowledgements by agents.",
        labelnames=["action"],
    )
    CANCEL_LATENCY = _make(
        Histogram,
        "sessions_cancel_ack_seconds",
        "From a CANCEL entry to its CONTROL_ACK.",
        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )
    SLOW_CONSUMERS = _make(
        Counter, "sessions_slow_consumers_closed", "Sockets closed for not reading."
    )
    TURNS = _make(
        Counter,
        "sessions_turns",
        "Turns by what happened to them: queued, claimed, retried, done, failed, abandoned.",
        labelnames=["event"],
    )
    CLAIM_LATENCY = _make(
        Histogram,
        "sessions_turn_claim_seconds",
        "From a turn's creation (or its re-offer) to its claim by a worker.",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    )
    LEASE_EXPIRIES = _make(
        Counter, "sessions_turn_lease_expiries", "Claims whose worker let the lease run out."
    )
else:  # pragma: no cover
    APPENDED = BATCH_SIZE = COMMIT_SECONDS = DELIVERED = REPLAYED = RESUMES = GAP_FILLS = _Noop()
    SOCKETS = SUBSCRIPTIONS = CONTROL_ACKS = CANCEL_LATENCY = SLOW_CONSUMERS = _Noop()
    TURNS = CLAIM_LATENCY = LEASE_EXPIRIES = _Noop()


class TurnsByState:
    """``sessions_turns_open{state=…}``: queued and claimed turns, read when scraped."""

    def describe(self) -> Iterator[Any]:
        yield GaugeMetricFamily("sessions_turns_open", "Open turns by state.", labels=["state"])

    def collect(self) -> Iterator[Any]:
        from django.db.models import Count

        from sessions_app.models import Turn

        family = GaugeMetricFamily("sessions_turns_open", "Open turns by state.", labels=["state"])
        rows = Turn.objects.filter(state__in=["queued", "claimed"]).values_list("state")
        for state, count in rows.annotate(n=Count("pk")).order_by():
            family.add_metric([state], count)
        yield family


class RunsByStatus:
    """``sessions_runs{status=…}``: read from the database when scraped."""

    def describe(self) -> Iterator[Any]:
        yield GaugeMetricFamily("sessions_runs", "Runs by status.", labels=["status"])

    def collect(self) -> Iterator[Any]:
        from django.db.models import Count

        from sessions_app.models import Run

        family = GaugeMetricFamily("sessions_runs", "Runs by status.", labels=["status"])
        for status, count in Run.objects.values_list("status").annotate(n=Count("pk")).order_by():
            family.add_metric([status], count)
        yield family


_registered = False


def register_collectors() -> None:
    global _registered
    if REGISTRY is not None and not _registered:
        REGISTRY.register(RunsByStatus())
        REGISTRY.register(TurnsByState())
        _registered = True
