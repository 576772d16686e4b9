"""Running a diagnostic job: the body of its task (:mod:`mlexec_app.tasks`), its progress and
cancel checks, and its results written into the ledger.

The job's lifecycle (create, queue, cancel, fail the stale ones) is :mod:`mlexec_app.jobs`;
this module runs what it queued and never the other way round, so the lifecycle loads without
the execution. The diagnostics run in a child process with time and memory limits
(:mod:`mlexec_app.diagnostics.sandbox`); this process keeps the heartbeat while it lives.
Progress and cancellation are cooperative: the diagnostics emit events between epochs, sizes
and folds; each event is stored, is handed to the optional ``PROGRESS_PUBLISHER`` hook, and
is followed by a cancel check (the row's ``cancel_requested``, the publisher's answer, and the
optional ``CANCEL_CHECKER`` hook), answered to the child over its pipe.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from mlexec_app import jobs, services
from mlexec_app.conf import get_config
from mlexec_app.exceptions import InvalidInput
from mlexec_app.models import DiagnosticJob, MetricDirection, Project, RunStatus

logger = logging.getLogger(__name__)

# How often a running job reads its row for a cancel request; bounds the cancel latency.
CANCEL_POLL_SECONDS = 0.5


class DatasetRefused(Exception):
    """An untrusted job's dataset or factory is no longer allowed when it comes to run."""


def execute(
    job_id: int, listener: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run the job (the body of the task); returns a short summary for the task result.

    ``listener`` also receives every progress event (the CLI draws its progress bar with it).
    First fails the jobs a dead worker left running, so the next worker cleans up after it.
    """
    jobs.fail_stale_jobs()
    job = _claim(job_id)
    if job is None:
        return {"job": job_id, "status": "skipped"}
    from mlexec_app.diagnostics.exceptions import Cancelled
    from mlexec_app.diagnostics.sandbox import JobFailed

    watcher = _Watcher(job, listener)
    try:
        report = _run(job, watcher)
        with transaction.atomic():  # the ledger rows and the job's result, or none of them
            run = record_results(job, report)
            _finish(job, RunStatus.FINISHED, result=report, run=run)
    except Cancelled:
        _finish(job, RunStatus.CANCELLED)
        jobs.publish(job, {"type": "cancelled"})
        return {"job": job_id, "status": RunStatus.CANCELLED}
    except Exception as exc:
        # The child's reason already names its error type, a limit or the signal it died of.
        plain = isinstance(exc, JobFailed | DatasetRefused)
        error = str(exc) if plain else f"{type(exc).__name__}: {exc}"
        _finish(job, RunStatus.FAILED, error=error)
        jobs.publish(job, {"type": "failed", "error": error})
        logger.warning("Diagnostic job %s failed:\n%s", job_id, traceback.format_exc())
        raise
    jobs.publish(job, {"type": "finished", "run": run.pk if run else None})
    return {"job": job_id, "status": RunStatus.FINISHED, "run": run.pk if run else None}


def _claim(job_id: int) -> DiagnosticJob | None:
    """queued -> running, exactly once even if two workers race for the same job."""
    now = timezone.now()
    claimed = DiagnosticJob.objects.filter(pk=job_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, fraction_done=0.0
    )
    if not claimed:
        return None
    job = DiagnosticJob.objects.select_related("project").get(pk=job_id)
    jobs.publish(job, {"type": "started", "diagnostics": job.diagnostics, "dataset": job.dataset})
    return job


def _run(job: DiagnosticJob, watcher: _Watcher) -> dict[str, Any]:
    """Run the job's diagnostics in a child process within the limits; returns the report.

    What an untrusted job loads is decided again here, so a file swapped for a symlink after
    the job was queued, or a setting changed since, is refused all the same.
    """
    from mlexec_app.diagnostics.sandbox import Limits, run_in_child

    try:
        source = job.dataset if job.trusted else jobs.dataset_source(job.project, job.dataset)
        params = jobs.resolved_params(job.params, trusted=job.trusted)
    except InvalidInput as exc:
        raise DatasetRefused(exc.message) from None
    task = {
        "dataset": source,
        "diagnostics": list(job.diagnostics),
        "params": params,
        "target_error": jobs.target_error(job.project),
        "device": get_config()["DEVICE"],
    }
    if list(job.diagnostics) == ["search"]:
        task["done"] = resumed_trials(job)
    limits = Limits(
        seconds=float(get_config()["JOB_TIME_LIMIT"]),
        memory_mb=int(get_config()["JOB_MEMORY_LIMIT_MB"] or 0),
    )
    return run_in_child(
        task, limits, on_event=watcher.on_event, should_cancel=watcher.should_cancel,
        heartbeat=watcher.beat, heartbeat_every=heartbeat_every(),
    )  # fmt: skip


def heartbeat_every() -> float:
    """Seconds between heartbeats of a running job: well inside JOB_STALE_AFTER."""
    return min(15.0, max(0.5, float(get_config()["JOB_STALE_AFTER"]) / 4))


class _Watcher:
    """Stores progress (with the heartbeat), publishes it, and answers "should I stop?"."""

    def __init__(
        self, job: DiagnosticJob, listener: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.job = job
        self.listener = listener
        self.cancel = False
        self._polled = 0.0
        checker = get_config()["CANCEL_CHECKER"]
        self.checker: Callable[[DiagnosticJob], bool] | None = (
            import_string(checker) if checker else None
        )

    def beat(self) -> None:
        DiagnosticJob.objects.filter(pk=self.job.pk, status__in=jobs.ACTIVE).update(
            heartbeat_at=timezone.now()
        )

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("step") == "trial" and isinstance(event.get("trial"), dict):
            record_trial(self.job, event["trial"])
        DiagnosticJob.objects.filter(pk=self.job.pk).update(
            progress=event, fraction_done=event.get("fraction", 0.0), heartbeat_at=timezone.now()
        )
        if self.listener is not None:
            self.listener(event)
        if jobs.publish(self.job, {"type": "progress", **event}):
            self.cancel = True

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not self.cancel and now - self._polled >= CANCEL_POLL_SECONDS:
            self._polled = now
            self.cancel = DiagnosticJob.objects.filter(
                pk=self.job.pk, cancel_requested=True
            ).exists()
            if not self.cancel and self.checker is not None:
                self.cancel = bool(self.checker(self.job))
        return self.cancel


def _finish(job: DiagnosticJob, status: str, **fields: Any) -> None:
    now = timezone.now()
    updates: dict[str, Any] = {"status": status, "finished_at": now, "heartbeat_at": now}
    if status == RunStatus.FINISHED:
        updates["fraction_done"] = 1.0
    updates.update(fields)
    DiagnosticJob.objects.filter(pk=job.pk).update(**updates)


# --- results into the ledger ------------------------------------------------------------------


def record_results(job: DiagnosticJob, report: dict[str, Any]) -> Any:
    """Write the report where the diagnosis reads it: a Run, an ErrorAnalysis, an assessment.

    Returns the baseline Run, or None when the job ran no baseline.
    """
    project = job.project
    run = None
    base = report.get("baseline")
    if base and "search" in report:
        return _record_search(job, project, report)
    if base:
        run = _record_run(job, project, report, base)
        if isinstance(job.params.get("fix_labels"), dict):
            _record_fixed_labels(job, project, report)
    slices = report.get("slices")
    if slices and slices["total_errors"]:
        services.record_error_analysis(
            project, slices["categories"], slices["total_errors"], "diagnostics", run=run,
            notes=f"Dev errors by {slices['by']}, from diagnostic job {job.pk}.",
        )  # fmt: skip
    if report.get("label_issues"):
        _record_assessment(job, project, report)
    return run


def _record_fixed_labels(job: DiagnosticJob, project: Project, report: dict[str, Any]) -> None:
    """A rerun on corrected labels: the fix-labels intervention's realised gain is the dev
    error of the job whose labels were reviewed minus this one's (error-rate points)."""
    from mlexec_app.models import Intervention

    fix = job.params["fix_labels"]
    earlier = DiagnosticJob.objects.filter(pk=fix.get("from_job"), project=project).first()
    before = ((earlier.result or {}).get("baseline") or {}).get("errors", {}) if earlier else {}
    after = report["baseline"]["errors"]["dev"]
    if not isinstance(before.get("dev"), int | float):
        return
    gain = round(before["dev"] - after, 6)
    report["fix_labels"] = {
        "fixed": len(fix.get("labels") or []),
        "dev_error_before": before["dev"],
        "dev_error_after": after,
        "realized_gain": gain,
    }
    intervention = Intervention.objects.filter(pk=fix.get("intervention"), project=project).first()
    if intervention is not None and intervention.status != "abandoned":
        status = None if intervention.status == "done" else "done"
        services.update_intervention(intervention, status=status, realized_gain=gain)


def _in_metric_units(project: Project, error: float) -> float:
    higher = project.metric_direction == MetricDirection.HIGHER_IS_BETTER
    return round(1.0 - error, 6) if higher else error


def _record_run(job: DiagnosticJob, project: Project, report: dict[str, Any], base: dict) -> Any:
    metrics = {split: _in_metric_units(project, e) for split, e in base["errors"].items()}
    history = []
    curve = report.get("learning_curve")
    if curve:
        for size, train, dev in zip(
            curve["sizes"], curve["train_error"], curve["dev_error"], strict=True
        ):
            history.append({"key": "learning_curve.train_error", "step": size, "value": train})
            history.append({"key": "learning_curve.dev_error", "step": size, "value": dev})
    quality = report.get("data_quality", {})
    if "trusted_dev_error" in quality:
        metrics["dev_trusted_labels"] = _in_metric_units(project, quality["trusted_dev_error"])
    return services.record_run(
        project,
        name=f"Diagnostics baseline (job {job.pk}, {job.dataset})",
        params={
            "dataset": job.dataset,
            "model": base["spec"],
            "train": base["config"],
            "device": report.get("device", "cpu"),
        },  # fmt: skip
        metrics=metrics,
        history=history,
        source="diagnostics",
        notes=f"Baseline of diagnostic job {job.pk}; split sizes {base['sizes']}.",
    )


def _record_assessment(job: DiagnosticJob, project: Project, report: dict[str, Any]) -> None:
    sizes = (report.get("baseline") or {}).get("sizes", {})
    quality = report["data_quality"]
    services.record_assessment(
        project,
        train_size=sizes.get("train"),
        train_dev_size=sizes.get("train_dev"),
        dev_size=sizes.get("dev"),
        test_size=sizes.get("test"),
        class_balance=report["dataset"]["class_balance"],
        label_quality=quality["label_quality"],
        train_source=job.dataset,
        dev_source=job.dataset,
        test_source=job.dataset,
        notes=f"From diagnostic job {job.pk}: {quality['note']}",
    )


# --- the hyperparameter search's trials ---------------------------------------------------


def resumed_trials(job: DiagnosticJob) -> list[dict[str, Any]]:
    """The trials of the search ``job`` resumes (the same project's only), oldest first."""
    ref = (job.params.get("search") or {}).get("resume")
    if ref is None:
        return []
    earlier = DiagnosticJob.objects.filter(
        pk=ref, pk__lt=job.pk, project=job.project, diagnostics=["search"]
    ).first()
    if earlier is None:
        return []
    return [*resumed_trials(earlier), *earlier.result.get("trials", [])]


def record_trial(job: DiagnosticJob, trial: dict[str, Any]) -> None:
    """One finished or pruned trial: a Run with its parameters and dev error, kept on the job."""
    try:
        value = float(trial["value"]) if trial.get("value") is not None else None
        params = {str(k): v for k, v in dict(trial["params"]).items()}
        state, number = str(trial["state"]), int(trial["number"])
    except (KeyError, TypeError, ValueError):
        return  # the child's event is data, never trusted blindly
    metrics = {"dev": _in_metric_units(job.project, value)} if value is not None else {}
    with transaction.atomic():
        services.record_run(
            job.project,
            name=f"Search job {job.pk}, trial {number}"[:200],
            params={**params, "trial": number, "state": state, "dataset": job.dataset},
            metrics=metrics,
            status=RunStatus.FINISHED if state == "COMPLETE" else RunStatus.CANCELLED,
            source="search",
            notes=f"Trial {number} of search job {job.pk} ({state.lower()}).",
        )
        locked = DiagnosticJob.objects.select_for_update().get(pk=job.pk)
        kept = dict(locked.result or {})
        kept["trials"] = [*kept.get("trials", []), {"number": number, "params": params,
                                                    "value": value, "state": state}]  # fmt: skip
        locked.result = kept
        locked.save(update_fields=["result"])


def _record_search(job: DiagnosticJob, project: Project, report: dict[str, Any]) -> Any:
    """The best trial trained again as a baseline Run, and the intervention's realised gain."""
    from mlexec_app.models import Intervention

    before = services.diagnose_project(project).diagnosis.measurements.dev
    base = report["baseline"]
    search = report["search"]
    run = services.record_run(
        project,
        name=f"Search job {job.pk}: best trial {search['best']['number']}",
        params={"dataset": job.dataset, "model": base["spec"], "train": base["config"],
                "device": report.get("device", "cpu"), "search": search["best"]["params"]},
        metrics={split: _in_metric_units(project, e) for split, e in base["errors"].items()},
        source="search",
        notes=f"Best of {search['completed']} trials of search job {job.pk}, trained again.",
    )  # fmt: skip
    report["search"]["trials"] = (job.result or {}).get("trials", report["search"]["trials"])
    ref = (job.params.get("search") or {}).get("intervention")
    intervention = Intervention.objects.filter(pk=ref, project=project).first() if ref else None
    if intervention is not None and before is not None:
        gain = round(before - base["errors"]["dev"], 6)
        report["search"]["realized_gain"] = gain
        status = None if intervention.status == "done" else "done"
        if intervention.status != "abandoned":
            services.update_intervention(intervention, status=status, realized_gain=gain)
    return run
