"""Diagnostic jobs: start, run, report progress, cancel, and fail the ones a dead worker left.

A :class:`~mlexec_app.models.DiagnosticJob` row is the job's single source of truth; any
process (web, worker, CLI) reads and writes it. The task in :mod:`mlexec_app.tasks` only calls
:func:`execute`. Lifecycle (the run statuses)::

    queued ──> running ──> finished
      │           │  └───> failed        (an error, or no heartbeat for JOB_STALE_AFTER seconds)
      │           └──> cancelling ──> cancelled
      └──> cancelled                     (cancelled before a worker picked it up)

The diagnostics run in a child process with time and memory limits
(:mod:`mlexec_app.diagnostics.sandbox`); this process keeps the heartbeat while it lives.
Progress and cancellation are cooperative: the diagnostics emit events between epochs, sizes
and folds; each event is stored, is handed to the optional ``PROGRESS_PUBLISHER`` hook, and
is followed by a cancel check (the row's ``cancel_requested``, the publisher's answer, and the
optional ``CANCEL_CHECKER`` hook), answered to the child over its pipe.

What a job may load is decided when it is created and again when it runs: a job not marked
``trusted`` (anything but the site owner's CLI) names only registered datasets and model
factories, or files in its project's data folder (:mod:`mlexec_app.diagnostics.allowlist`).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string

from mlexec_app import services
from mlexec_app.conf import get_config
from mlexec_app.exceptions import InvalidInput, InvalidTransition, NotFound
from mlexec_app.models import DiagnosticJob, MetricDirection, Project, RunStatus

logger = logging.getLogger(__name__)

#: What a job's ``params`` may hold (see docs/mlexec/diagnostics.md).
PARAM_KEYS = frozenset(
    {"model", "train", "label_issues", "label_train", "label_model", "label", "slice_column",
     "target_error", "search", "fix_labels"}
)  # fmt: skip
MAX_DATASET = 500  # DiagnosticJob.dataset's length
ACTIVE = (RunStatus.RUNNING, RunStatus.CANCELLING)
FINAL = (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED)
# How often a running job reads its row for a cancel request; bounds the cancel latency.
CANCEL_POLL_SECONDS = 0.5
DIAGNOSTIC_CHOICES = (
    "overfit_batch",
    "lr_range",
    "label_issues",
    "learning_curve",
    "baseline",
    "slices",
    "search",
)
#: Searches a job may resume: the trials of one that stopped before its budget was spent.
RESUMABLE = (RunStatus.CANCELLED, RunStatus.FAILED)
#: Bounds of a search's trial budget and time budget (seconds), for every door that starts one.
SEARCH_TRIALS = (1, 1000)
SEARCH_SECONDS = (1.0, 86_400.0)


class DatasetRefused(Exception):
    """An untrusted job's dataset or factory is no longer allowed when it comes to run."""


def job_setting(key: str) -> Any:
    """One ``MLEXEC_APP`` key, read at call time (never at import)."""
    return get_config()[key]


# --- starting and cancelling -----------------------------------------------------------------


def create_job(
    project: Project,
    dataset: str,
    *,
    diagnostics: list[str] | None = None,
    params: dict[str, Any] | None = None,
    user: Any = None,
    trusted: bool = False,
) -> DiagnosticJob:
    """A queued job row, validated (unknown diagnostics are refused here, not in the worker).

    ``trusted`` (the site owner's CLI) lets the job name any dataset spec and any dotted
    factory; otherwise only what :func:`dataset_source` and :func:`resolved_params` allow.
    """
    chosen = list(diagnostics or ["label_issues", "learning_curve", "baseline", "slices"])
    unknown = sorted(set(chosen) - set(DIAGNOSTIC_CHOICES))
    if unknown:
        raise InvalidInput(
            f"Unknown diagnostics {unknown}; choose from {', '.join(DIAGNOSTIC_CHOICES)}.",
            code="invalid_choice",
        )
    if "search" in chosen and len(chosen) > 1:
        raise InvalidInput("A search job runs the search alone.", code="invalid_choice")
    if not isinstance(dataset, str) or not dataset.strip():
        raise InvalidInput("Name a dataset, e.g. digits.", code="invalid_dataset")
    dataset = dataset.strip()
    if len(dataset) > MAX_DATASET:
        raise InvalidInput(
            f"A dataset name has at most {MAX_DATASET} characters.", code="invalid_dataset"
        )
    services.all_printable({"dataset": dataset, "params": params or {}})
    check_job(project, dataset, chosen, dict(params or {}), trusted=trusted)
    return DiagnosticJob.objects.create(
        project=project,
        dataset=dataset,
        diagnostics=chosen,
        params=dict(params or {}),
        trusted=trusted,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )


def check_job(
    project: Project, dataset: str, diagnostics: list[str], params: Any, *, trusted: bool
) -> None:
    """Raise InvalidInput unless a job of ``project`` may run this (the admin form asks too)."""
    if not isinstance(params, dict):
        raise InvalidInput("params must be an object.", code="invalid_params")
    if not trusted:
        dataset_source(project, dataset)
    try:
        build_plan(project, diagnostics, resolved_params(params, trusted=trusted))
    except (TypeError, ValueError) as exc:  # bad keys or values: say so now, not in the worker
        raise InvalidInput(f"Invalid job parameters: {exc}", code="invalid_params") from exc


def data_folder(project: Project) -> Path | None:
    """The folder whose files ``project``'s jobs may name: ``DATA_ROOT/<project id>``."""
    root = job_setting("DATA_ROOT")
    return Path(root) / str(project.pk) if root else None


def dataset_source(project: Project, dataset: str) -> str:
    """What an untrusted job of ``project`` naming ``dataset`` loads; InvalidInput otherwise.

    The same refusal for a missing file and a forbidden one, so it tells nothing about files.
    """
    from mlexec_app.diagnostics.allowlist import NotAllowed, resolve_dataset

    try:
        return resolve_dataset(
            dataset, registered=job_setting("JOB_DATASETS"), data_root=data_folder(project)
        )
    except NotAllowed as exc:
        raise InvalidInput(str(exc), code=exc.code) from None


def resolved_params(params: dict[str, Any], *, trusted: bool) -> dict[str, Any]:
    """``params`` with each model ``factory`` name replaced by its registered dotted path.

    A trusted job's factories are dotted paths already and pass unchanged. Raises
    InvalidInput (``factory_not_allowed``) for a name nobody registered.
    """
    if trusted:
        return params
    from mlexec_app.diagnostics.allowlist import NotAllowed, resolve_factory

    out = dict(params)
    for key in ("model", "label_model"):
        spec = out.get(key)
        if isinstance(spec, dict) and "factory" in spec:
            try:
                dotted = resolve_factory(
                    spec["factory"], registered=job_setting("JOB_MODEL_FACTORIES")
                )
            except NotAllowed as exc:
                raise InvalidInput(str(exc), code=exc.code, detail={"field": key}) from None
            out[key] = {**spec, "factory": dotted}
    return out


def start_job(project: Project, dataset: str, **kwargs: Any) -> DiagnosticJob:
    """Create a job and enqueue it on the Django Tasks backend (inline with ImmediateBackend)."""
    return enqueue_job(create_job(project, dataset, **kwargs))


def enqueue_job(job: DiagnosticJob) -> DiagnosticJob:
    """Hand a queued job to the task backend; returns the job as it stands afterwards."""
    from mlexec_app.tasks import run_diagnostic_job  # needs django_tasks: the mlexec extra

    result = run_diagnostic_job.enqueue(job.pk)
    DiagnosticJob.objects.filter(pk=job.pk, task_id="").update(task_id=str(result.id))
    job.refresh_from_db()
    return job


def request_cancel(job: DiagnosticJob) -> DiagnosticJob:
    """Ask the job to stop: a queued job is cancelled at once, a running one at its next check."""
    with transaction.atomic():
        locked = DiagnosticJob.objects.select_for_update().get(pk=job.pk)
        if locked.status in FINAL:
            raise InvalidTransition(f"Job {job.pk} is already {locked.status}.")
        locked.cancel_requested = True
        if locked.status == RunStatus.QUEUED:
            locked.status = RunStatus.CANCELLED
            locked.finished_at = timezone.now()
        else:
            locked.status = RunStatus.CANCELLING
        locked.save(update_fields=["cancel_requested", "status", "finished_at"])
    return locked


def fail_stale_jobs(stale_after: float | None = None) -> int:
    """Fail running jobs whose worker stopped beating (killed, out of memory, machine lost).

    Called by ``mlexec reap-jobs`` and whenever jobs are listed, so a dead worker's job shows
    as failed rather than running forever. Returns how many jobs were failed.
    """
    seconds = float(stale_after if stale_after is not None else job_setting("JOB_STALE_AFTER"))
    cutoff = timezone.now() - timedelta(seconds=seconds)
    stale = DiagnosticJob.objects.filter(status__in=ACTIVE).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    failed = 0
    for job in stale:
        message = f"The worker stopped responding: no heartbeat for over {seconds:.0f} s."
        failed += DiagnosticJob.objects.filter(pk=job.pk, status__in=ACTIVE).update(
            status=RunStatus.FAILED, error=message, finished_at=timezone.now()
        )
        _publish(job, {"type": "failed", "error": message})
    return failed


def jobs_for(projects: QuerySet[Project]) -> QuerySet[DiagnosticJob]:
    """Jobs of the given projects, after failing stale ones."""
    fail_stale_jobs()
    return DiagnosticJob.objects.filter(project__in=projects).select_related("project")


def find_job(job_id: int, projects: QuerySet[Project] | None = None) -> DiagnosticJob:
    qs = DiagnosticJob.objects.select_related("project")
    if projects is not None:
        qs = qs.filter(project__in=projects)
    job = qs.filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"No diagnostic job {job_id}.")
    return job


# --- running ---------------------------------------------------------------------------------


def execute(
    job_id: int, listener: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run the job (the body of the task); returns a short summary for the task result.

    ``listener`` also receives every progress event (the CLI draws its progress bar with it).
    First fails the jobs a dead worker left running, so the next worker cleans up after it.
    """
    fail_stale_jobs()
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
        _publish(job, {"type": "cancelled"})
        return {"job": job_id, "status": RunStatus.CANCELLED}
    except Exception as exc:
        # The child's reason already names its error type, a limit or the signal it died of.
        plain = isinstance(exc, JobFailed | DatasetRefused)
        error = str(exc) if plain else f"{type(exc).__name__}: {exc}"
        _finish(job, RunStatus.FAILED, error=error)
        _publish(job, {"type": "failed", "error": error})
        logger.warning("Diagnostic job %s failed:\n%s", job_id, traceback.format_exc())
        raise
    _publish(job, {"type": "finished", "run": run.pk if run else None})
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
    _publish(job, {"type": "started", "diagnostics": job.diagnostics, "dataset": job.dataset})
    return job


def _run(job: DiagnosticJob, watcher: _Watcher) -> dict[str, Any]:
    """Run the job's diagnostics in a child process within the limits; returns the report.

    What an untrusted job loads is decided again here, so a file swapped for a symlink after
    the job was queued, or a setting changed since, is refused all the same.
    """
    from mlexec_app.diagnostics.sandbox import Limits, run_in_child

    try:
        source = job.dataset if job.trusted else dataset_source(job.project, job.dataset)
        params = resolved_params(job.params, trusted=job.trusted)
    except InvalidInput as exc:
        raise DatasetRefused(exc.message) from None
    task = {
        "dataset": source,
        "diagnostics": list(job.diagnostics),
        "params": params,
        "target_error": target_error(job.project),
        "device": job_setting("DEVICE"),
    }
    if list(job.diagnostics) == ["search"]:
        task["done"] = resumed_trials(job)
    limits = Limits(
        seconds=float(job_setting("JOB_TIME_LIMIT")),
        memory_mb=int(job_setting("JOB_MEMORY_LIMIT_MB") or 0),
    )
    return run_in_child(
        task, limits, on_event=watcher.on_event, should_cancel=watcher.should_cancel,
        heartbeat=watcher.beat, heartbeat_every=heartbeat_every(),
    )  # fmt: skip


def heartbeat_every() -> float:
    """Seconds between heartbeats of a running job: well inside JOB_STALE_AFTER."""
    return min(15.0, max(0.5, float(job_setting("JOB_STALE_AFTER")) / 4))


def build_plan(project: Project, diagnostics: list[str], params: dict[str, Any]) -> Any:
    """The diagnostics plan a job's parameters describe; raises on unknown or bad keys."""
    from mlexec_app.diagnostics.pipeline import plan_from_params

    unknown = sorted(set(params) - PARAM_KEYS)
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; known: {', '.join(sorted(PARAM_KEYS))}")
    if list(diagnostics) == ["search"]:
        from mlexec_app.diagnostics.search import SearchOptions

        search = params.get("search") or {}
        if not isinstance(search, dict):
            raise ValueError("search must be an object")
        for key in ("resume", "intervention"):
            if key in search and (
                not isinstance(search[key], int) or isinstance(search[key], bool)
            ):
                raise ValueError(f"search.{key} is an id")
        SearchOptions.from_params(search)
        return plan_from_params(["baseline"], {k: v for k, v in params.items() if k != "search"},
                                target_error(project))  # fmt: skip
    if "search" in params:
        raise ValueError("search options belong to a search job")
    return plan_from_params(diagnostics, params, target_error(project))


def target_error(project: Project) -> float | None:
    """The project's target as an error rate (1 - accuracy for higher-is-better metrics)."""
    if project.target_value is None:
        return None
    if project.metric_direction == MetricDirection.HIGHER_IS_BETTER:
        return round(1.0 - project.target_value, 6)
    return project.target_value


class _Watcher:
    """Stores progress (with the heartbeat), publishes it, and answers "should I stop?"."""

    def __init__(
        self, job: DiagnosticJob, listener: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.job = job
        self.listener = listener
        self.cancel = False
        self._polled = 0.0
        checker = job_setting("CANCEL_CHECKER")
        self.checker: Callable[[DiagnosticJob], bool] | None = (
            import_string(checker) if checker else None
        )

    def beat(self) -> None:
        DiagnosticJob.objects.filter(pk=self.job.pk, status__in=ACTIVE).update(
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
        if _publish(self.job, {"type": "progress", **event}):
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


def _publish(job: DiagnosticJob, event: dict[str, Any]) -> bool:
    """Hand ``event`` to the PROGRESS_PUBLISHER hook; never let the hook break the job."""
    path = job_setting("PROGRESS_PUBLISHER")
    if not path:
        return False
    try:
        return bool(import_string(path)(job, {"job": job.pk, "project": job.project_id, **event}))
    except Exception:
        logger.exception("PROGRESS_PUBLISHER %s failed for job %s", path, job.pk)
        return False


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


# --- the hyperparameter search ----------------------------------------------------------------


def start_search(
    project: Project,
    *,
    dataset: str | None = None,
    trials: int = 20,
    timeout: float = 60.0,
    user: Any = None,
) -> DiagnosticJob:
    """The plan's hyperparameter step as a search job: adopt it, then queue the study.

    Refused (409 ``not_in_plan``) unless the plan's next step is a hyperparameter one. The
    dataset and model default to those of the project's newest diagnostic job.
    """
    from mlexec_app.methodology.planner import Kind

    step = services.plan_project(project).next
    if step is None or step.kind is not Kind.HYPERPARAMETERS:
        now = f"{step.rule_id} ({step.kind.value})" if step else "nothing"
        raise InvalidTransition(
            f"The plan's next step is {now}, not a hyperparameter one.", code="not_in_plan"
        )
    last = DiagnosticJob.objects.filter(project=project).exclude(diagnostics=["search"]).first()
    if dataset is None:
        if last is None:
            raise InvalidInput("Name a dataset: the project has no diagnostic job yet.",
                               code="invalid_dataset")  # fmt: skip
        dataset = last.dataset
    open_step = project.interventions.filter(
        rule_id=step.rule_id, status__in=["proposed", "in_progress"]
    ).first()
    intervention = open_step or services.adopt(project, [step.rule_id])[0]
    params: dict[str, Any] = {
        "search": {"trials": trials, "timeout": timeout, "intervention": intervention.pk}
    }
    if last is not None and "model" in last.params:
        params["model"] = last.params["model"]
    job = create_job(project, dataset, diagnostics=["search"], params=params, user=user,
                     trusted=bool(last and last.trusted and last.dataset == dataset))  # fmt: skip
    if intervention.status == "proposed":
        services.update_intervention(intervention, status="in_progress")
    return enqueue_job(job)


def resume_search(job: DiagnosticJob, user: Any = None) -> DiagnosticJob:
    """A new search job that continues ``job``'s study from the trials it finished."""
    if job.diagnostics != ["search"] or job.status not in RESUMABLE:
        raise InvalidTransition(
            f"Job {job.pk} is {job.status}: only a cancelled or failed search resumes.",
        )
    params = {**job.params, "search": {**job.params.get("search", {}), "resume": job.pk}}
    return enqueue_job(
        create_job(
            job.project,
            job.dataset,
            diagnostics=["search"],
            params=params,
            user=user,
            trusted=job.trusted,
        )  # fmt: skip
    )


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
