"""REST API of diagnostic jobs: start, list, follow, cancel, and their plots as SVG.

A router of its own, mounted inside the app's router by :mod:`mlexec_app.api`; it reuses that
module's authentication (API key or session) and visibility rules: a job is visible to whoever
sees its project.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Field, Router, Schema, Status
from ninja.pagination import paginate

from mlexec_app import jobs
from mlexec_app.api_common import (
    ERRORS,
    ApiKeyAuth,
    BoundedPagination,
    CookieAuth,
    coded_errors,
    principal,
    project_of,
    visible,
)
from mlexec_app.exceptions import NotFound
from mlexec_app.models import DiagnosticJob

jobs_router = Router(tags=["mlexec diagnostics"], auth=[ApiKeyAuth(), CookieAuth()])
jobs_router.add_decorator(coded_errors, mode="view")


class JobIn(Schema):
    dataset: str = Field(
        ...,
        description="A registered dataset (digits by default) or the path of a .csv/.npz file "
        "relative to the project's data folder",
    )
    diagnostics: list[str] | None = Field(
        None, description="Default: label_issues, learning_curve, baseline, slices."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="model, train, label_issues, label_train, label, slice_column, "
        "target_error; a model's factory is a registered factory name",
    )


class SearchIn(Schema):
    dataset: str | None = Field(
        None, description="Default: the dataset of the project's newest diagnostic job."
    )
    trials: int = Field(
        20, ge=jobs.SEARCH_TRIALS[0], le=jobs.SEARCH_TRIALS[1], description="Trial budget."
    )
    time_budget: float = Field(
        60.0, ge=jobs.SEARCH_SECONDS[0], le=jobs.SEARCH_SECONDS[1],
        description="Seconds for the search.",
    )  # fmt: skip


class JobSummaryOut(Schema):
    id: int
    project: str = Field(..., alias="project.slug")
    dataset: str
    diagnostics: list[str]
    status: str
    cancel_requested: bool
    fraction_done: float
    progress: dict[str, Any]
    error: str
    run: int | None = Field(None, alias="run_id")
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None


class JobOut(JobSummaryOut):
    params: dict[str, Any]
    task_id: str
    result: dict[str, Any]


def job_of(request: HttpRequest, job_id: int) -> DiagnosticJob:
    return jobs.find_job(job_id, visible(request))


@jobs_router.post("/projects/{ref}/diagnostic-jobs", response={201: JobOut, **ERRORS})
def start_job(request: HttpRequest, ref: str, payload: JobIn) -> Status:
    project = project_of(request, ref)
    job = jobs.start_job(
        project, payload.dataset, diagnostics=payload.diagnostics, params=payload.params,
        user=principal(request).user,
    )  # fmt: skip
    return Status(201, job)


@jobs_router.post("/projects/{ref}/search-jobs", response={201: JobOut, **ERRORS})
def start_search(request: HttpRequest, ref: str, payload: SearchIn) -> Status:
    """The plan's hyperparameter step as an Optuna search (409 unless it is the next step)."""
    project = project_of(request, ref)
    job = jobs.start_search(
        project, dataset=payload.dataset, trials=payload.trials, timeout=payload.time_budget,
        user=principal(request).user,
    )  # fmt: skip
    return Status(201, job)


@jobs_router.post("/diagnostic-jobs/{job_id}/resume", response={201: JobOut, **ERRORS})
def resume_search(request: HttpRequest, job_id: int) -> Status:
    """A cancelled or failed search continues in a new job from the trials it finished."""
    return Status(201, jobs.resume_search(job_of(request, job_id), principal(request).user))


@jobs_router.get("/projects/{ref}/diagnostic-jobs", response={200: list[JobSummaryOut], **ERRORS})
@paginate(BoundedPagination)
def list_jobs(request: HttpRequest, ref: str) -> Any:
    project = project_of(request, ref)
    return jobs.jobs_for(visible(request)).filter(project=project)


@jobs_router.get("/diagnostic-jobs/{job_id}", response={200: JobOut, **ERRORS})
def get_job(request: HttpRequest, job_id: int) -> DiagnosticJob:
    jobs.fail_stale_jobs()
    return job_of(request, job_id)


@jobs_router.post("/diagnostic-jobs/{job_id}/cancel", response={200: JobOut, **ERRORS})
def cancel_job(request: HttpRequest, job_id: int) -> DiagnosticJob:
    return jobs.request_cancel(job_of(request, job_id))


@jobs_router.get("/diagnostic-jobs/{job_id}/plots/{name}.svg", response={200: None, **ERRORS})
def plot(request: HttpRequest, job_id: int, name: str) -> HttpResponse:
    """``learning-curve`` or ``label-issues`` (image data only), as ``image/svg+xml``."""
    from mlexec_app.diagnostics import plots

    result = job_of(request, job_id).result
    if name == "learning-curve" and "learning_curve" in result:
        svg = plots.learning_curve_svg(result["learning_curve"])
    elif name == "label-issues" and result.get("label_issues", {}).get("image_shape"):
        issues = result["label_issues"]
        svg = plots.label_issue_images_svg(issues["issues"], issues["image_shape"])
    else:
        raise NotFound(f"Job {job_id} has no {name} plot.")
    return HttpResponse(svg, content_type="image/svg+xml")
