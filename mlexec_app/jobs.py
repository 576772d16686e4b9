"""Diagnostic jobs' lifecycle: create, queue, cancel, and fail the ones a dead worker left.

A :class:`~mlexec_app.models.DiagnosticJob` row is the job's single source of truth; any
process (web, worker, CLI) reads and writes it. Running a job is
:mod:`mlexec_app.job_runner`, called by the task in :mod:`mlexec_app.tasks`; this module
imports neither, so every door can create and cancel jobs without loading their execution.
Lifecycle (the run statuses)::

    queued ──> running ──> finished
      │           │  └───> failed        (an error, or no heartbeat for JOB_STALE_AFTER seconds)
      │           └──> cancelling ──> cancelled
      └──> cancelled                     (cancelled before a worker picked it up)

What a job may load is decided when it is created and again when it runs: a job not marked
``trusted`` (anything but the site owner's CLI) names only registered datasets and model
factories, or files in its project's data folder (:mod:`mlexec_app.diagnostics.allowlist`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string

from mlexec_app import services
from mlexec_app.conf import get_config
from mlexec_app.diagnostics.names import ALL as PIPELINE_DIAGNOSTICS
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
#: A job in one of these states never changes again (the run statuses' own final states).
FINAL = services.FINAL_RUN_STATUSES
#: What a job may run: every diagnostic of the pipeline, or the search as a job of its own.
DIAGNOSTIC_CHOICES = (*PIPELINE_DIAGNOSTICS, "search")
#: Searches a job may resume: the trials of one that stopped before its budget was spent.
RESUMABLE = (RunStatus.CANCELLED, RunStatus.FAILED)
#: Bounds of a search's trial budget and time budget (seconds), for every door that starts one.
SEARCH_TRIALS = (1, 1000)
SEARCH_SECONDS = (1.0, 86_400.0)

#: Hands a queued job's id to a worker and returns the task id; installed by mlexec_app.tasks
#: when the app loads (see set_enqueuer), so that this module needs no task backend.
Enqueuer = Callable[[int], str]
_enqueuer: Enqueuer | None = None


def set_enqueuer(enqueue: Enqueuer | None) -> Enqueuer | None:
    """Install what :func:`enqueue_job` hands jobs to; returns the one it replaces."""
    global _enqueuer
    previous, _enqueuer = _enqueuer, enqueue
    return previous


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
    if len(set(chosen)) < len(chosen):
        # Each runs once anyway; a list of 100,000 repeats was stored, and answered in every
        # job list (a page of 100 summaries held 160 MB of them).
        raise InvalidInput("Name each diagnostic once.", code="invalid_choice")
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
    if not trusted:
        check_open_jobs(project)
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


def check_open_jobs(project: Project) -> None:
    """InvalidTransition (``too_many_jobs``) when the project's owner has ``MAX_OPEN_JOBS``
    jobs queued or running (untrusted ones, in any of their projects): each may hold a worker
    for JOB_TIME_LIMIT, so one caller could otherwise queue the pool away."""
    most = get_config()["MAX_OPEN_JOBS"]
    if not most:
        return
    open_jobs = DiagnosticJob.objects.filter(
        project__owner_id=project.owner_id, trusted=False, status__in=(RunStatus.QUEUED, *ACTIVE)
    )
    if open_jobs.count() >= most:
        raise InvalidTransition(
            f"You have {most} jobs queued or running, the most at once; wait for one "
            "to end or cancel one.",
            code="too_many_jobs",
        )


def data_folder(project: Project) -> Path | None:
    """The folder whose files ``project``'s jobs may name: ``DATA_ROOT/<project id>``."""
    root = get_config()["DATA_ROOT"]
    return Path(root) / str(project.pk) if root else None


def dataset_source(project: Project, dataset: str) -> str:
    """What an untrusted job of ``project`` naming ``dataset`` loads; InvalidInput otherwise.

    The same refusal for a missing file and a forbidden one, so it tells nothing about files.
    """
    from mlexec_app.diagnostics.allowlist import NotAllowed, resolve_dataset

    try:
        return resolve_dataset(
            dataset, registered=get_config()["JOB_DATASETS"], data_root=data_folder(project)
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
                    spec["factory"], registered=get_config()["JOB_MODEL_FACTORIES"]
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
    if _enqueuer is None:
        raise ImproperlyConfigured(
            "No job queue: mlexec_app.tasks is loaded with the app when django-tasks is "
            "installed (pip install 'django-ai-stack[mlexec]')."
        )
    task_id = _enqueuer(job.pk)
    DiagnosticJob.objects.filter(pk=job.pk, task_id="").update(task_id=str(task_id))
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
    seconds = float(stale_after if stale_after is not None else get_config()["JOB_STALE_AFTER"])
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
        publish(job, {"type": "failed", "error": message})
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


# --- plans and progress, for every door ---------------------------------------------------


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


def publish(job: DiagnosticJob, event: dict[str, Any]) -> bool:
    """Hand ``event`` to the PROGRESS_PUBLISHER hook; never let the hook break the job."""
    path = get_config()["PROGRESS_PUBLISHER"]
    if not path:
        return False
    try:
        return bool(import_string(path)(job, {"job": job.pk, "project": job.project_id, **event}))
    except Exception:
        logger.exception("PROGRESS_PUBLISHER %s failed for job %s", path, job.pk)
        return False


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

    check_open_jobs(project)  # before the plan's step is adopted: a refusal changes nothing
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
