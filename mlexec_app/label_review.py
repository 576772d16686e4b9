"""Reviewing the labels a diagnostic job suspected: list, decide, export.

The suspected rows, their given and suggested labels and their images come only from the
job's stored result; a request names a row and a verdict, nothing else, so a caller cannot
write a label the job did not suggest.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from django.db import transaction

from mlexec_app import jobs, services
from mlexec_app.exceptions import InvalidInput, InvalidTransition, NotFound
from mlexec_app.models import DiagnosticJob, Intervention, LabelDecision, Project, RunStatus

#: The planner's data-quality step the accepted fixes are recorded as.
FIX_LABELS = "plan.data_quality.fix_labels"

# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def job_of(project: Project, job_id: int) -> DiagnosticJob:
    job = project.diagnostic_jobs.filter(pk=job_id, status=RunStatus.FINISHED).first()
    if job is None or not _issues(job):
        raise NotFound(f"No finished job {job_id} with label issues in this project.")
    return job


def latest_job(project: Project) -> DiagnosticJob | None:
    for job in project.diagnostic_jobs.filter(status=RunStatus.FINISHED).order_by("-id")[:20]:
        if _issues(job):
            return job
    return None


def _issues(job: DiagnosticJob) -> list[dict[str, Any]]:
    found = (job.result or {}).get("label_issues") or {}
    issues = found.get("issues") if isinstance(found, dict) else None
    return [i for i in issues or [] if isinstance(i, dict) and isinstance(i.get("index"), int)]


def image_shape(job: DiagnosticJob) -> list[int] | None:
    """Rows and columns of the job's images: the pipeline stores (channels, rows, columns)."""
    shape = ((job.result or {}).get("label_issues") or {}).get("image_shape")
    if isinstance(shape, list) and len(shape) >= 2 and all(isinstance(n, int) for n in shape):
        return shape[-2:]
    return None


def review_rows(job: DiagnosticJob) -> list[dict[str, Any]]:
    """The suspected rows, most suspicious first, each with its verdict so far (or None)."""
    verdicts = dict(job.label_decisions.values_list("index", "verdict"))
    return [{**issue, "verdict": verdicts.get(issue["index"])} for issue in _issues(job)]


@transaction.atomic
def decide(job: DiagnosticJob, index: int, verdict: str, user: Any) -> LabelDecision:
    if verdict not in LabelDecision.Verdict.values:
        raise InvalidInput(
            f"verdict is one of {LabelDecision.Verdict.values}.", code="invalid_choice"
        )
    issue = next((i for i in _issues(job) if i["index"] == index), None)
    if issue is None:
        raise NotFound(f"Row {index} is not among this job's suspected labels.")
    decision, _ = LabelDecision.objects.update_or_create(
        job=job,
        index=index,
        defaults={
            "verdict": verdict,
            "given": str(issue.get("given", ""))[:200],
            "suggested": str(issue.get("suggested", ""))[:200],
            "decided_by": user,
        },
    )
    return decision


def corrected_labels_csv(job: DiagnosticJob) -> str:
    """``index,given,corrected`` for every accepted fix, in row order."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["index", "given", "corrected"])
    accepted = job.label_decisions.filter(verdict=LabelDecision.Verdict.ACCEPT).order_by("index")
    for d in accepted:
        writer.writerow([d.index, _cell(d.given), _cell(d.suggested)])
    return out.getvalue()


def corrected_labels_npz(job: DiagnosticJob) -> bytes:
    """The accepted fixes as NPZ arrays ``index``, ``given``, ``corrected`` (no pickled objects:
    ``numpy.load`` reads them with ``allow_pickle=False``)."""
    import numpy as np  # here: the admin imports this module in every Django process

    accepted = list(
        job.label_decisions.filter(verdict=LabelDecision.Verdict.ACCEPT)
        .order_by("index")
        .values_list("index", "given", "suggested")
    )
    out = io.BytesIO()
    np.savez(
        out,
        index=np.array([a[0] for a in accepted], dtype=np.int64),
        given=np.array([a[1] for a in accepted], dtype=np.str_),
        corrected=np.array([a[2] for a in accepted], dtype=np.str_),
    )
    return out.getvalue()


def reruns(job: DiagnosticJob) -> list[DiagnosticJob]:
    """The jobs started on this job's corrected labels, newest first."""
    return list(
        DiagnosticJob.objects.filter(
            project=job.project, params__fix_labels__from_job=job.pk
        ).order_by("-id")
    )


def record_fixes(job: DiagnosticJob, user: Any) -> tuple[Intervention, DiagnosticJob]:
    """Record the accepted fixes as the plan's fix-labels step and start a rerun on the
    corrected labels; the rerun's finish records the step's realised gain.

    The corrected labels travel in the rerun's parameters, applied to the same dataset the
    reviewed job loaded: no file is written, and no path is named.
    """
    with transaction.atomic():
        intervention, rerun = _record_fixes(job, user)
    return intervention, jobs.enqueue_job(rerun)


def _record_fixes(job: DiagnosticJob, user: Any) -> tuple[Intervention, DiagnosticJob]:
    locked = DiagnosticJob.objects.select_for_update().get(pk=job.pk)
    fixes = list(
        locked.label_decisions.filter(verdict=LabelDecision.Verdict.ACCEPT)
        .order_by("index")
        .values_list("index", "suggested")
    )
    if not fixes:
        raise InvalidInput("Accept at least one suggested label first.", code="no_fixes")
    if any(r.status in (RunStatus.QUEUED, *jobs.ACTIVE) for r in reruns(locked)):
        raise InvalidTransition("A rerun on these corrected labels is already under way.")
    intervention = services.take_up(locked.project, FIX_LABELS)
    if intervention.status == "proposed":
        services.update_intervention(intervention, status="in_progress")
    earlier = dict((locked.params.get("fix_labels") or {}).get("labels") or [])
    labels = {**earlier, **dict(fixes)}
    params = {k: v for k, v in locked.params.items() if k != "fix_labels"}
    params["fix_labels"] = {
        "labels": [[row, label] for row, label in sorted(labels.items())],
        "intervention": intervention.pk,
        "from_job": locked.pk,
    }
    chosen = list(locked.diagnostics)
    if "baseline" not in chosen:
        chosen.append("baseline")
    rerun = jobs.create_job(
        locked.project, locked.dataset, diagnostics=chosen, params=params, user=user,
        trusted=locked.trusted,
    )  # fmt: skip
    return intervention, rerun


def _cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_START) else text
