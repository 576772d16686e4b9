"""Error analysis by hand: tag the misclassified dev examples of a diagnostic job.

The examples (their rows, given and predicted classes, images or features) come only from the
job's stored result; a request names an example's row and a category, nothing else. Each
change rewrites the review's :class:`~mlexec_app.models.ErrorAnalysis` (how many of the tagged
examples carry each category), which is the record the diagnosis and the planner read.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from mlexec_app import services
from mlexec_app.conf import get_config
from mlexec_app.exceptions import InvalidInput, NotFound
from mlexec_app.methodology import error_analysis as ea
from mlexec_app.models import DiagnosticJob, ErrorReview, Project, RunStatus

#: Offered on every new review; "wrong label" is what the planner's fix-labels rule looks for.
DEFAULT_CATEGORIES = ("wrong label", "ambiguous", "look-alike class", "unusual example")
MAX_CATEGORIES = 12
MAX_CATEGORY_LENGTH = 40
SOURCE = "error_review"


def examples(job: DiagnosticJob) -> list[dict[str, Any]]:
    """The misclassified dev examples the job kept, in dev-row order."""
    base = (job.result or {}).get("baseline")
    found = base.get("misclassified") if isinstance(base, dict) else None
    return [e for e in found or [] if isinstance(e, dict) and isinstance(e.get("index"), int)]


def dev_error(job: DiagnosticJob) -> float | None:
    errors = ((job.result or {}).get("baseline") or {}).get("errors") or {}
    value = errors.get("dev") if isinstance(errors, dict) else None
    return float(value) if isinstance(value, int | float) else None


def image_shape(job: DiagnosticJob) -> list[int] | None:
    shape = ((job.result or {}).get("dataset") or {}).get("image_shape")
    if isinstance(shape, list) and len(shape) >= 2 and all(isinstance(n, int) for n in shape):
        return shape[-2:]
    return None


def job_of(project: Project, job_id: int) -> DiagnosticJob:
    job = project.diagnostic_jobs.filter(pk=job_id, status=RunStatus.FINISHED).first()
    if job is None or not examples(job):
        raise NotFound(f"No finished job {job_id} with misclassified dev examples here.")
    return job


def latest_job(project: Project) -> DiagnosticJob | None:
    for job in project.diagnostic_jobs.filter(status=RunStatus.FINISHED).order_by("-id")[:20]:
        if examples(job):
            return job
    return None


def review_of(job: DiagnosticJob) -> ErrorReview:
    """The job's review as it stands (not saved until something is tagged or added)."""
    found = ErrorReview.objects.filter(job=job).first()
    return found or ErrorReview(job=job, categories=list(DEFAULT_CATEGORIES), tags={})


def tags_of(review: ErrorReview, index: int) -> list[str]:
    return list(review.tags.get(str(index), []))


@transaction.atomic
def add_category(job: DiagnosticJob, name: str, user: Any) -> ErrorReview:
    name = " ".join(str(name).split())
    services.all_printable({"category": name})
    if not 1 <= len(name) <= MAX_CATEGORY_LENGTH:
        raise InvalidInput(
            f"A category name has 1 to {MAX_CATEGORY_LENGTH} characters.", code="invalid_field"
        )
    review = _locked(job)
    if name in review.categories:
        return review
    if len(review.categories) >= MAX_CATEGORIES:
        raise InvalidInput(f"At most {MAX_CATEGORIES} categories.", code="too_many_categories")
    review.categories = [*review.categories, name]
    review.updated_by = user if getattr(user, "is_authenticated", False) else None
    review.save()
    return review


@transaction.atomic
def toggle(job: DiagnosticJob, index: int, category: str, user: Any) -> ErrorReview:
    """Put ``category`` on the example at dev row ``index``, or take it off; an example may
    carry several categories. Rewrites the review's error analysis."""
    if not any(e["index"] == index for e in examples(job)):
        raise NotFound(f"Row {index} is not among this job's misclassified dev examples.")
    review = _locked(job)
    if category not in review.categories:
        raise InvalidInput("Tag with one of the review's categories.", code="invalid_choice")
    current = tags_of(review, index)
    chosen = [c for c in current if c != category] if category in current else [*current, category]
    tags = {k: v for k, v in review.tags.items() if k != str(index)}
    if chosen:
        tags[str(index)] = [c for c in review.categories if c in chosen]
    review.tags = tags
    review.updated_by = user if getattr(user, "is_authenticated", False) else None
    _record(review)
    review.save()
    return review


def _locked(job: DiagnosticJob) -> ErrorReview:
    ErrorReview.objects.get_or_create(job=job, defaults={"categories": list(DEFAULT_CATEGORIES)})
    return ErrorReview.objects.select_for_update().get(job=job)


def counts(review: ErrorReview) -> tuple[dict[str, int], int]:
    """Errors per category and how many examples were tagged (the analysis' sample size)."""
    tagged = [set(v) for v in review.tags.values() if v]
    return {c: sum(c in t for t in tagged) for c in review.categories}, len(tagged)


def _record(review: ErrorReview) -> None:
    """The review's counts as its ErrorAnalysis row (none while nothing is tagged)."""
    categories, sample = counts(review)
    if review.analysis is not None:
        old, review.analysis = review.analysis, None
        old.delete()  # a fresh row: the newest analysis is the one the planner reads
    if sample:
        review.analysis = services.record_error_analysis(
            review.job.project,
            {k: v for k, v in categories.items() if v},
            sample,
            SOURCE,
            run=review.job.run,
            notes=f"Tagged by hand: misclassified dev examples of diagnostic job {review.job_id}.",
        )


def ceilings(review: ErrorReview) -> list[ea.CategoryCeiling]:
    """Each category's ceiling (share of the tagged errors x the job's dev error)."""
    categories, sample = counts(review)
    error = dev_error(review.job)
    if not sample or error is None:
        return []
    return ea.ceilings(categories, sample, error, get_config()["CONFIDENCE"])
