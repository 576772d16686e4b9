"""Pages under /mlexec/: the signed-in user's projects, and one project's report."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from mlexec_app import charts, error_review, label_review, reports, search_start
from mlexec_app.exceptions import InvalidInput, InvalidTransition, NotFound
from mlexec_app.models import DiagnosticJob, ErrorReview, Project


@login_required
def index(request: HttpRequest) -> HttpResponse:
    projects = (
        Project.objects.filter(owner_id=request.user.pk)
        .annotate(run_count=Count("runs"))
        .order_by("-updated_at", "-id")
    )
    return render(request, "mlexec_app/index.html", {"projects": projects})


@login_required
def project(request: HttpRequest, slug: str) -> HttpResponse:
    # Someone else's project is a 404, like a missing one.
    found = get_object_or_404(Project, slug=slug, owner_id=request.user.pk)
    return render(request, "mlexec_app/project.html", reports.page_context(found))


@login_required
@require_POST
def start_search(request: HttpRequest, slug: str) -> HttpResponse:
    """The plan's hyperparameter step as a search job (the service of the search-jobs API)."""
    found = _own_project(request, slug)
    job, problem = search_start.start_from_post(found, request.POST, request.user)
    if job is None:
        messages.error(request, problem)
    else:
        messages.success(request, f"Search job #{job.pk} started: {job.get_status_display()}.")
    return HttpResponseRedirect(reverse("mlexec_app:project", kwargs={"slug": slug}), status=303)


def _own_project(request: HttpRequest, slug: str) -> Project:
    return get_object_or_404(Project, slug=slug, owner_id=request.user.pk)


def _review_job(project: Project, job_id: int) -> Any:
    try:
        return label_review.job_of(project, job_id)
    except NotFound as exc:
        raise Http404(str(exc)) from exc


@login_required
def labels(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    found = _own_project(request, slug)
    job = _review_job(found, job_id)
    shape = label_review.image_shape(job)
    rows = label_review.review_rows(job)
    for row in rows:
        image = row.get("image")
        title = f"row {row['index']}"
        row["svg"] = charts.image_svg(image, shape, title) if image and shape else ""
    context = {
        "project": found,
        "job": job,
        "rows": rows,
        "summary": _summary(job, rows),
        "accepted": sum(1 for r in rows if r["verdict"] == "accept"),
        "reruns": label_review.reruns(job),
        "intervention": found.interventions.filter(rule_id=label_review.FIX_LABELS).last(),
    }
    return render(request, "mlexec_app/labels.html", context)


def _summary(job: DiagnosticJob, rows: list[dict[str, Any]] | None = None) -> str:
    rows = label_review.review_rows(job) if rows is None else rows
    decided = sum(1 for r in rows if r["verdict"])
    accepted = sum(1 for r in rows if r["verdict"] == "accept")
    return f"{decided} of {len(rows)} decided, {accepted} accepted."


@login_required
@require_POST
def labels_fix(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    """Record the accepted fixes as the fix-labels step and rerun the diagnosis on them."""
    job = _review_job(_own_project(request, slug), job_id)
    try:
        _, rerun = label_review.record_fixes(job, request.user)
    except (InvalidInput, InvalidTransition) as exc:  # nothing accepted, or a rerun under way
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Rerun job #{rerun.pk} started: {rerun.get_status_display()}.")
    url = reverse("mlexec_app:labels", kwargs={"slug": slug, "job_id": job.pk})
    return HttpResponseRedirect(f"{url}#fixes", status=303)


@login_required
def labels_npz(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    job = _review_job(_own_project(request, slug), job_id)
    response = HttpResponse(
        label_review.corrected_labels_npz(job), content_type="application/octet-stream"
    )
    response["Content-Disposition"] = f'attachment; filename="labels-job-{job.pk}.npz"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_POST
def label_decide(request: HttpRequest, slug: str, job_id: int, index: int) -> HttpResponse:
    job = _review_job(_own_project(request, slug), job_id)
    try:
        decision = label_review.decide(job, index, request.POST.get("verdict", ""), request.user)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    except InvalidInput as exc:
        return HttpResponseBadRequest(exc.message, content_type="text/plain")
    if _wants_json(request):
        return JsonResponse({"index": index, "verdict": decision.verdict, "summary": _summary(job)})
    url = reverse("mlexec_app:labels", kwargs={"slug": slug, "job_id": job.pk})
    return HttpResponseRedirect(f"{url}#row-{index}", status=303)


@login_required
def labels_csv(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    job = _review_job(_own_project(request, slug), job_id)
    response = HttpResponse(label_review.corrected_labels_csv(job), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="labels-job-{job.pk}.csv"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- error analysis ------------------------------------------------------------------------------


def _wants_json(request: HttpRequest) -> bool:
    """The page's script asks for JSON; a plain form post gets a redirect back."""
    return request.headers.get("Accept", "").startswith("application/json")


def _error_job(project: Project, job_id: int) -> DiagnosticJob:
    try:
        return error_review.job_of(project, job_id)
    except NotFound as exc:
        raise Http404(str(exc)) from exc


def _ceilings_html(review: ErrorReview) -> str:
    _, tagged = error_review.counts(review)
    return render_to_string(
        "mlexec_app/_ceilings.html",
        {
            "ceilings": error_review.ceilings(review),
            "tagged": tagged,
            "dev_error": error_review.dev_error(review.job),
        },
    )


@login_required
def errors(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    found = _own_project(request, slug)
    job = _error_job(found, job_id)
    review = error_review.review_of(job)
    shape = error_review.image_shape(job)
    rows = []
    for example in error_review.examples(job):
        image = example.get("image")
        svg = ""
        if isinstance(image, list) and shape:
            svg = charts.image_svg(image, shape, f"row {example['index']}")
        features = example.get("features")
        rows.append(
            {
                **example,
                "svg": svg,
                "features": features if isinstance(features, list) else [],
                "tags": error_review.tags_of(review, example["index"]),
            }
        )
    context = {
        "project": found,
        "job": job,
        "rows": rows,
        "categories": review.categories,
        "ceilings_html": _ceilings_html(review),
        "max_categories": error_review.MAX_CATEGORIES,
    }
    return render(request, "mlexec_app/errors.html", context)


@login_required
@require_POST
def error_tag(request: HttpRequest, slug: str, job_id: int, index: int) -> HttpResponse:
    job = _error_job(_own_project(request, slug), job_id)
    try:
        review = error_review.toggle(job, index, request.POST.get("category", ""), request.user)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    except InvalidInput as exc:
        return HttpResponseBadRequest(exc.message, content_type="text/plain")
    if _wants_json(request):
        return JsonResponse(
            {
                "index": index,
                "tags": error_review.tags_of(review, index),
                "ceilings_html": _ceilings_html(review),
            }
        )
    url = reverse("mlexec_app:errors", kwargs={"slug": slug, "job_id": job.pk})
    return HttpResponseRedirect(f"{url}#ex-{index}", status=303)


@login_required
@require_POST
def error_category(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    job = _error_job(_own_project(request, slug), job_id)
    try:
        error_review.add_category(job, request.POST.get("name", ""), request.user)
    except InvalidInput as exc:
        return HttpResponseBadRequest(exc.message, content_type="text/plain")
    url = reverse("mlexec_app:errors", kwargs={"slug": slug, "job_id": job.pk})
    return HttpResponseRedirect(url, status=303)
