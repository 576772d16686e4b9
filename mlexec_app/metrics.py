"""Prometheus metrics of diagnostic jobs, read from the database at scrape time.

Registered in the default prometheus-client registry when that package is installed (it is
in the ``sessions`` extra); serve it with any Prometheus endpoint, e.g. ``sessions_app.ops``
on the demo site or ``prometheus_client``'s own view.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class JobsCollector:
    """``mlexec_jobs{status}`` and ``mlexec_job_seconds{status}`` (count and sum of durations)."""

    def describe(self) -> Iterator[Any]:
        # Without this, registering would call collect(), i.e. query the database at start-up.
        from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily

        yield GaugeMetricFamily("mlexec_jobs", "Diagnostic jobs by status.", labels=["status"])
        yield SummaryMetricFamily(
            "mlexec_job_seconds", "Duration of ended jobs.", labels=["status"]
        )

    def collect(self) -> Iterator[Any]:
        from django.db.models import Count, DurationField, ExpressionWrapper, F, Sum
        from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily

        from mlexec_app.models import DiagnosticJob

        jobs = GaugeMetricFamily("mlexec_jobs", "Diagnostic jobs by status.", labels=["status"])
        for status, count in (
            DiagnosticJob.objects.values_list("status").annotate(n=Count("pk")).order_by()
        ):
            jobs.add_metric([status], count)
        yield jobs
        took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        durations = SummaryMetricFamily(
            "mlexec_job_seconds", "Duration of ended jobs.", labels=["status"]
        )
        ended = DiagnosticJob.objects.filter(started_at__isnull=False, finished_at__isnull=False)
        for status, count, total in (
            ended.values_list("status").annotate(n=Count("pk"), t=Sum(took)).order_by()
        ):
            durations.add_metric([status], count, total.total_seconds() if total else 0.0)
        yield durations


def register() -> None:
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return
    if not getattr(register, "done", False):
        REGISTRY.register(JobsCollector())
        register.done = True  # type: ignore[attr-defined]
