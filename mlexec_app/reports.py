"""Diagnoses and plans as plain data (REST API, admin) and as readable text (the command)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from django.db.models import F, Window
from django.db.models.functions import RowNumber

from mlexec_app import charts, error_review, label_review, services
from mlexec_app.exceptions import InvalidInput
from mlexec_app.methodology.diagnosis import SPLIT_NAMES, Diagnosis, pct, points
from mlexec_app.methodology.planner import Candidate, Plan
from mlexec_app.models import Project, Run

SPLITS = ("train", "train_dev", "dev", "test")


def _errors(d: Diagnosis) -> dict[str, float | None]:
    m = d.measurements
    return {"human": m.human, "target": m.target, **{s: getattr(m, s) for s in SPLITS}}


def _sizes(d: Diagnosis) -> dict[str, int | None]:
    return {s: getattr(d.measurements, f"{s}_size") for s in SPLITS}


def diagnosis_payload(project: Project, pd: services.ProjectDiagnosis) -> dict[str, Any]:
    """Everything the diagnosis found, JSON-ready; error rates whatever the metric's direction."""
    d = pd.diagnosis
    rec = services.recommendation(project)
    return {
        "project": project.slug,
        "run": pd.run.pk if pd.run else None,
        "errors": _errors(d),
        "sizes": _sizes(d),
        "dominant": d.dominant.value if d.dominant else None,
        "confidence": d.confidence.value,
        "contenders": [p.value for p in d.contenders],
        "gaps": [
            {
                "problem": p.value,
                "upper_split": g.upper_split,
                "lower_split": g.lower_split,
                "estimate": g.estimate,
                "low": g.interval.low,
                "high": g.interval.high,
                "verdict": g.verdict.value,
                "needed_size": g.needed_size,
            }
            for p, g in d.gaps.items()
        ],
        "findings": [
            {
                "rule_id": f.rule_id,
                "title": f.title,
                "message": f.message,
                "verdict": f.verdict.value,
                "problem": f.problem.value if f.problem else None,
            }
            for f in d.findings
        ],
        "categories": [
            {
                "category": c.category,
                "count": c.count,
                "share": c.share.estimate,
                "share_low": c.share.low,
                "share_high": c.share.high,
                "ceiling": c.ceiling,
                "ceiling_high": c.ceiling_high,
            }
            for c in pd.categories
        ],
        "recommendation": {
            "approach": rec.approach,
            "first_steps": list(rec.first_steps),
            "fit": rec.fit,
            "caution": rec.caution,
        },
    }


def candidate_payload(c: Candidate) -> dict[str, Any]:
    return {
        "rule_id": c.rule_id,
        "kind": c.kind.value,
        "priority": c.priority,
        "title": c.title,
        "rationale": c.rationale,
        "expected_gain": c.expected_gain,
        "problem": c.problem.value if c.problem else None,
        "state": c.state.value,
    }


def plan_payload(project: Project, plan: Plan) -> dict[str, Any]:
    return {
        "project": project.slug,
        "next": candidate_payload(plan.next) if plan.next else None,
        "recommended": [candidate_payload(c) for c in plan.recommended],
        "deferred": [candidate_payload(c) for c in plan.deferred],
        "deferred_reason": plan.deferred_reason,
        "tried": [candidate_payload(c) for c in plan.tried],
    }


# --- text ---------------------------------------------------------------------------------------

CONFIDENCE_WORDS = {
    "decided": "decided",
    "inconclusive": "inconclusive: the data cannot single it out yet",
    "point_estimate": "point estimate only (split sizes unknown)",
    "no_problem": "no material problem found",
    "not_enough_data": "not enough measurements",
}


def _split_lines(d: Diagnosis) -> list[str]:
    lines = []
    for name, value in _errors(d).items():
        if value is None:
            continue
        size = _sizes(d).get(name)
        label = SPLIT_NAMES.get(name, name)
        lines.append(f"  {label:<10} {pct(value):>7}" + (f"   (n={size:,})" if size else ""))
    return lines


def _gap_lines(d: Diagnosis) -> list[str]:
    return [
        f"  {p.value.replace('_', ' '):<16} {points(g.estimate):>12}   "
        f"[{points(g.interval.low)} .. {points(g.interval.high)}]   {g.verdict.value}"
        for p, g in d.gaps.items()
    ]


def text_report(project: Project) -> str:
    """The readable report ``manage.py mlexec diagnose`` prints."""
    pd = services.diagnose_project(project)
    d = pd.diagnosis
    plan = services.plan_project(project, pd)
    run = f"run #{pd.run.pk} {pd.run.name!r}" if pd.run else "no usable run"
    lines = [
        f"Project {project.name} ({project.slug}), stage {project.stage}, {run}",
        f"Metric: {project.metric_name} ({project.get_metric_direction_display()}); "
        "shown below as error rates.",
        "",
        "Errors:",
        *_split_lines(d),
        "",
        "Gaps (95% intervals):",
        *(_gap_lines(d) or ["  none measurable"]),
        "",
        f"Dominant problem: {d.dominant.value.replace('_', ' ') if d.dominant else 'none'} "
        f"({CONFIDENCE_WORDS[d.confidence.value]})",
        "",
        "Findings:",
        *[f"  [{f.rule_id}] {f.message}" for f in d.findings],
    ]
    if pd.categories:
        lines += ["", "Error categories (ceiling = share x dev error):"]
        lines += [
            f"  {c.category:<20} {c.share.estimate:>5.0%}  ceiling {points(c.ceiling)}"
            for c in pd.categories
        ]
    lines += ["", "Plan:"] + _plan_lines(plan)
    return "\n".join(lines) + "\n"


def _plan_lines(plan: Plan) -> list[str]:
    if not (plan.recommended or plan.deferred or plan.tried):
        return ["  nothing to do: no intervention is justified"]
    lines = []
    for i, c in enumerate(plan.recommended, 1):
        gain = f", up to {points(c.expected_gain)}" if c.expected_gain is not None else ""
        lines.append(f"  {i}. {c.title} [{c.rule_id}{gain}]{' (open)' * (c.state == 'open')}")
        lines.append(f"     because: {c.rationale}")
    for c in plan.deferred:
        lines.append(f"  later: {c.title} [{c.rule_id}]: {plan.deferred_reason}")
    lines += [f"  tried already: {c.title} [{c.rule_id}]" for c in plan.tried]
    return lines


# --- cost curve --------------------------------------------------------------------------------


def cost_payload(cost: services.ProjectCost) -> dict[str, Any]:
    """A project's cost curve for the API: the figures, which inputs, the traffic, the note."""
    traffic = cost.reading.traffic
    return {
        **(asdict(cost.result) if cost.result else {}),
        "inputs": cost.inputs,
        "agent": cost.reading.agent,
        "traffic": asdict(traffic) if traffic else None,
        "note": cost_note(cost),
    }


def cost_note(cost: services.ProjectCost) -> str:
    """Which figures the curve used, in a sentence a page can show."""
    if cost.inputs == "measured":
        return f"Measured traffic of agent {cost.reading.agent!r}."
    return f"Typed-in figures. {cost.reading.note}".strip()


def cost_context(cost: services.ProjectCost) -> dict[str, Any]:
    return {
        "cost": cost.result,
        "cost_inputs": cost.inputs,
        "cost_note": cost_note(cost),
        "traffic": cost.reading,
    }


def page_cost_context(project: Project) -> dict[str, Any]:
    """``cost_context`` for a page, which shows a curve it cannot compute (a model saved with
    figures past a float's range) as its reason rather than failing whole."""
    try:
        return cost_context(services.project_cost(project))
    except InvalidInput as exc:
        return {"cost": None, "cost_problem": exc.message, "traffic": None}


# --- pages (admin project page and /mlexec/ project page) -----------------------------------------

MAX_SERIES = 6


# Points a chart draws of one metric: a plot 560 pixels wide shows no more. A run takes any
# number of points, and a page drew all of them (400,000: a 4.6 MB page, read whole each time).
MAX_CHART_POINTS = 1000


def history_series(run: Run | None) -> dict[str, list[tuple[int, float]]]:
    """A run's metric history, key by key (the first few keys, for a readable plot), each
    thinned to at most about ``MAX_CHART_POINTS`` points (``chart_points``)."""
    if run is None:
        return {}
    keys = run.points.order_by("key").values_list("key", flat=True).distinct()[:MAX_SERIES]
    return {key: chart_points(run, key) for key in keys}


def chart_points(run: Run, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of one metric in step order: every point of a short history, else
    every n-th (picked by the database) and the last, about ``MAX_CHART_POINTS`` in all."""
    points = run.points.filter(key=key).order_by("step", "id")
    stride = math.ceil(points.count() / MAX_CHART_POINTS)
    if stride <= 1:
        return list(points.values_list("step", "value"))
    ranked = points.annotate(rank=Window(RowNumber(), order_by=[F("step").asc(), F("id").asc()]))
    kept = ranked.annotate(gap=(F("rank") - 1) % stride).filter(gap=0)
    out = [(step, value) for step, value in kept.values_list("step", "value")]
    last = points.reverse().values_list("step", "value").first()
    return out if last is None or out[-1] == last else [*out, last]


def page_context(project: Project) -> dict[str, Any]:
    """What a project page shows: diagnosis, plan, gates, cost and the two charts."""
    pd = services.diagnose_project(project)
    plan = services.plan_project(project, pd)
    jobs = list(project.diagnostic_jobs.order_by("-id")[:5])
    return {
        "project": project,
        "report": diagnosis_payload(project, pd),
        "plan": plan_payload(project, plan),
        "gates": services.stage_gates(project),
        **page_cost_context(project),
        "decomposition_svg": charts.error_decomposition(pd.diagnosis),
        "categories_svg": charts.category_ceilings(pd.categories),
        "history_svg": charts.metric_history(history_series(pd.run)),
        "diagnosed_run": pd.run,
        "label_job": label_review.latest_job(project),
        "error_job": error_review.latest_job(project),
        "jobs": jobs,
        # The page reloads itself while a job is queued or running: progress without a script.
        "jobs_active": any(j.status in ("queued", "running", "cancelling") for j in jobs),
    }
