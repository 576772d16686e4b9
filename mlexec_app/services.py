"""The one place that turns rows into the engine's dataclasses and back.

Handlers (REST API, admin, management commands, diagnostics jobs) call these functions; they
validate, write in one transaction, and raise :mod:`mlexec_app.exceptions` errors that say
how to fix the input. Nothing is written when they raise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.text import slugify

from mlexec_app import traffic as traffic_mod
from mlexec_app.conf import get_config
from mlexec_app.exceptions import InvalidInput, InvalidTransition, NotFound, StageGateFailed
from mlexec_app.methodology import classify as classify_mod
from mlexec_app.methodology import cost as cost_mod
from mlexec_app.methodology import error_analysis as ea
from mlexec_app.methodology import gates as gates_mod
from mlexec_app.methodology import planner
from mlexec_app.methodology.diagnosis import Diagnosis, Measurements, Settings, diagnose
from mlexec_app.methodology.metrics import Direction
from mlexec_app.methodology.more_data import CurveReading
from mlexec_app.models import (
    CostModel,
    DataAssessment,
    ErrorAnalysis,
    Intervention,
    InterventionKind,
    InterventionStatus,
    MetricPoint,
    Project,
    Run,
    RunStatus,
)

SPLIT_KEYS = ("train", "train_dev", "dev", "test")
INT_MAX = 2**31 - 1  # integer columns are 32-bit on PostgreSQL
ID_MAX = 2**63 - 1  # primary keys are 64-bit

# Legal run transitions; a finished, failed or cancelled run is final.
RUN_TRANSITIONS: dict[str, set[str]] = {
    RunStatus.QUEUED: {RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED},
    RunStatus.RUNNING: {RunStatus.CANCELLING, RunStatus.FINISHED, RunStatus.FAILED},
    RunStatus.CANCELLING: {RunStatus.CANCELLED, RunStatus.FINISHED, RunStatus.FAILED},
    RunStatus.CANCELLED: set(),
    RunStatus.FINISHED: set(),
    RunStatus.FAILED: set(),
}
FINAL_RUN_STATUSES = {RunStatus.CANCELLED, RunStatus.FINISHED, RunStatus.FAILED}

INTERVENTION_TRANSITIONS: dict[str, set[str]] = {
    InterventionStatus.PROPOSED: {
        InterventionStatus.IN_PROGRESS,
        InterventionStatus.DONE,
        InterventionStatus.ABANDONED,
    },
    InterventionStatus.IN_PROGRESS: {InterventionStatus.DONE, InterventionStatus.ABANDONED},
    InterventionStatus.DONE: set(),
    InterventionStatus.ABANDONED: set(),
}


# --- projects ---------------------------------------------------------------------------------


def direction(project: Project) -> Direction:
    return Direction(project.metric_direction)


def _unique_slug(owner: Any, name: str) -> str:
    base = slugify(name)[:90] or "project"
    slug, n = base, 1
    while Project.objects.filter(owner=owner, slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def _fraction(name: str, value: Any, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(
            f"{name} must be a number.", code="invalid_number", detail={"field": name}
        )
    if not 0.0 <= value <= 1.0:
        raise InvalidInput(
            f"{name} must be a fraction in [0, 1] (0.05 for 5%); got {value}.",
            code="out_of_range",
            detail={"field": name},
        )
    return float(value)


def _printable(field: str, value: Any) -> None:
    """Refuse values no database can hold: NUL (PostgreSQL's text and jsonb), lone
    surrogates (half of a character, such as \\ud83d: no UTF-8 form for any engine), and
    NaN or infinity (Python's json reads them; no engine's JSON column takes them)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(
            f"{field} contains {value}, which JSON cannot hold; send a finite number or null.",
            code="invalid_number",
            detail={"field": field},
        )
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(
                f"{field} contains a NUL character.", code="invalid_text", detail={"field": field}
            )
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                raise InvalidInput(
                    f"{field} contains a lone surrogate (half of a character).",
                    code="invalid_text",
                    detail={"field": field},
                ) from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _printable(field, key)
            _printable(field, item)
    elif isinstance(value, list | tuple):
        for item in value:
            _printable(field, item)


def all_printable(values: Mapping[str, Any]) -> None:
    """Refuse (InvalidInput, code ``invalid_text`` or ``invalid_number``) what no database can
    hold in ``values``: see :func:`_printable`; and (code ``too_long``) text and maps past
    their bounds (``MOST_CHARS``, ``MOST_ENTRIES``)."""
    for field, value in values.items():
        _printable(field, value)
    _check_sizes(values)


# Caller-written text and maps that every list of projects, assessments or error analyses
# carries (a page holds up to 1,000 rows, and Django's body limit alone let one row hold
# 2.5 MB: a page of them, gigabytes of one worker's memory).
MOST_CHARS = {"problem_statement": 10_000, "notes": 10_000}
MOST_ENTRIES = {"class_balance": 500, "categories": 500}


def _check_sizes(values: Mapping[str, Any]) -> None:
    for field, most in MOST_CHARS.items():
        value = values.get(field)
        if isinstance(value, str) and len(value) > most:
            message = f"{field} has at most {most:,} characters."
            raise InvalidInput(message, code="too_long", detail={"field": field})
    for field, most in MOST_ENTRIES.items():
        value = values.get(field)
        if isinstance(value, Mapping) and len(value) > most:
            raise InvalidInput(
                f"{field} has at most {most} entries.", code="too_long", detail={"field": field}
            )


PROJECT_FIELDS = (
    "name",
    "problem_statement",
    "data_type",
    "abstraction_layer",
    "metric_name",
    "metric_direction",
    "target_value",
    "human_level",
    "bayes_proxy",
    "agent",
)


@transaction.atomic
def create_project(owner: Any, *, name: str, slug: str = "", **fields: Any) -> Project:
    """Create a project; the slug is derived from the name when not given.

    Slugs are unique per owner: only the owner's own projects can make a slug taken, so the
    answer never depends on what other users have.
    """
    all_printable({"name": name, "slug": slug, **fields})
    unknown = set(fields) - set(PROJECT_FIELDS) - {"stage"}
    if unknown:
        raise InvalidInput(f"Unknown project fields: {sorted(unknown)}.")
    for key in ("target_value", "human_level"):
        _fraction(key, fields.get(key))
    if slug and Project.objects.filter(owner=owner, slug=slug).exists():
        raise InvalidInput(f"You already have a project {slug!r}.", code="slug_taken")
    project = Project(owner=owner, name=name, slug=slug or _unique_slug(owner, name), **fields)
    _full_clean(project)
    try:
        with transaction.atomic():
            project.save()
    except IntegrityError:  # the same owner created the same slug a moment ago
        raise InvalidInput(
            f"You already have a project {project.slug!r}.", code="slug_taken"
        ) from None
    return project


def _full_clean(obj: Any) -> None:
    """Model validation (choices, lengths) as an InvalidInput naming the fields."""
    try:
        obj.full_clean(exclude=["owner", "project", "run"])
    except ValidationError as exc:
        fields = ", ".join(sorted(exc.message_dict))
        raise InvalidInput(
            f"Invalid values for: {fields}.", code="invalid_field", detail=exc.message_dict
        ) from exc


@transaction.atomic
def update_project(project: Project, *, force: bool = False, **fields: Any) -> Project:
    """Change a project's fields; moving its stage forward checks the stage gates."""
    all_printable(fields)
    for key in ("target_value", "human_level"):
        if key in fields:
            _fraction(key, fields[key])
    new_stage = fields.pop("stage", None)
    for key, value in fields.items():
        if key not in PROJECT_FIELDS:
            raise InvalidInput(f"Unknown project field {key!r}.")
        setattr(project, key, value)
    if new_stage is not None and new_stage != project.stage:
        _check_stage_move(project, new_stage, force)
        project.stage = new_stage
    _full_clean(project)
    project.save()
    return project


def _check_stage_move(project: Project, new_stage: str, force: bool) -> None:
    if new_stage not in gates_mod.STAGES:
        raise InvalidInput(f"Unknown stage {new_stage!r}.", code="invalid_choice")
    forward = gates_mod.STAGES.index(new_stage) > gates_mod.STAGES.index(project.stage)
    if not forward or force:
        return
    failing = [c for c in stage_gates(project, new_stage) if not c.passed]
    if failing:
        raise StageGateFailed(
            f"Cannot move to {new_stage}: {len(failing)} gate(s) fail. Pass force to override.",
            detail=[{"id": c.id, "title": c.title, "detail": c.detail} for c in failing],
        )


# --- data assessments -------------------------------------------------------------------------


ASSESSMENT_FIELDS = (
    "train_size",
    "train_dev_size",
    "dev_size",
    "test_size",
    "class_balance",
    "label_quality",
    "train_source",
    "dev_source",
    "test_source",
    "notes",
)


@transaction.atomic
def record_assessment(project: Project, **fields: Any) -> DataAssessment:
    all_printable(fields)
    unknown = set(fields) - set(ASSESSMENT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown assessment fields: {sorted(unknown)}.")
    _fraction("label_quality", fields.get("label_quality"))
    for split in SPLIT_KEYS:
        size = fields.get(f"{split}_size")
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= INT_MAX
        ):
            raise InvalidInput(
                f"{split}_size must be a positive 32-bit integer.",
                code="invalid_number",
                detail={"field": f"{split}_size"},
            )
    assessment = DataAssessment(project=project, **fields)
    _full_clean(assessment)
    assessment.save()
    return assessment


def latest_assessment(project: Project) -> DataAssessment | None:
    return project.assessments.order_by("-created_at", "-id").first()


# --- runs -------------------------------------------------------------------------------------


def _check_metric(key: str, value: Any) -> float:
    if not key or len(key) > 100:
        raise InvalidInput("Metric keys must be 1 to 100 characters.", code="invalid_key")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(
            f"Metric {key!r} must be a finite number.", code="invalid_number", detail={"key": key}
        )
    if key in SPLIT_KEYS:
        _fraction(key, value, allow_none=False)
    return float(value)


def _apply_latest(run: Run, latest: Mapping[str, float]) -> None:
    for key, value in latest.items():
        if key in SPLIT_KEYS:
            setattr(run, key, value)
        run.metrics[key] = value


def _check_status(status: str) -> None:
    if status not in RunStatus.values:
        raise InvalidInput(
            f"Unknown run status {status!r}; use one of {RunStatus.values}.", code="invalid_choice"
        )


@transaction.atomic
def record_run(
    project: Project,
    *,
    name: str,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    status: str = RunStatus.FINISHED,
    cost: float | None = None,
    artifacts: list[dict[str, Any]] | None = None,
    history: Iterable[Mapping[str, Any]] = (),
    source: str = "api",
    notes: str = "",
) -> Run:
    """Record one run in one go (what an import or a diagnostics job produces).

    ``metrics`` maps a key to its final value; the keys ``train``, ``train_dev``, ``dev`` and
    ``test`` are the project's target metric on each split, as fractions in the metric's own
    units (accuracy if the project's metric is accuracy). ``history`` is a list of
    ``{"key", "value", "step"}`` points. Raises :class:`InvalidInput` and writes nothing when
    a value is out of range.
    """
    points = list(history)
    all_printable(
        {
            "name": name,
            "params": params,
            "metrics": metrics,
            "notes": notes,
            "artifacts": artifacts,
            "history": points,
            "source": source,
        }
    )
    _check_status(status)
    if cost is not None and (not math.isfinite(cost) or cost < 0):
        raise InvalidInput("cost must be a non-negative number.", code="invalid_number")
    latest = {k: _check_metric(k, v) for k, v in (metrics or {}).items()}
    run = Run(
        project=project,
        name=name,
        status=status,
        params=dict(params or {}),
        cost=cost,
        artifacts=list(artifacts or []),
        source=source,
        notes=notes,
        finished_at=timezone.now() if status in FINAL_RUN_STATUSES else None,
    )
    _full_clean(run)  # lengths: PostgreSQL enforces them, SQLite does not
    run.save()
    _add_points(run, points)
    _apply_latest(run, latest)  # the final values given win over the history's last points
    _check_run_size(run)
    run.save()
    return run


# Fields an import copies onto the run it updates (everything a record_run sets).
IMPORTED_FIELDS = (
    "name", "status", "params", "metrics", "train", "train_dev", "dev", "test", "cost",
    "artifacts", "source", "notes", "finished_at",
)  # fmt: skip


@transaction.atomic
def import_run(
    project: Project, external_id: str, *, finished_at: Any = None, **fields: Any
) -> tuple[Run, bool]:
    """Create, or update in place, the run imported from ``external_id`` (``"mlflow:<id>"``).

    ``fields`` are :func:`record_run`'s and are checked the same way; an update replaces the
    run's values and its whole history but keeps its id (error analyses and jobs point to it).
    Returns the run and whether it was created.
    """
    all_printable({"external_id": external_id})
    if not external_id or len(external_id) > 200:
        raise InvalidInput("external_id must be 1 to 200 characters.", code="invalid_field")
    old = project.runs.select_for_update().filter(external_id=external_id).first()
    new = record_run(project, **fields)
    if finished_at is not None:
        new.finished_at = finished_at
    if old is None:
        new.external_id = external_id
        new.save(update_fields=["external_id", "finished_at"])
        return new, True
    old.points.all().delete()
    new.points.update(run=old)
    for field in IMPORTED_FIELDS:
        setattr(old, field, getattr(new, field))
    new.delete()
    old.save()
    return old, False


@transaction.atomic
def log_batch(
    run: Run,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Sequence[Mapping[str, Any]] | None = None,
) -> Run:
    """Log parameters and metric points like an experiment tracker, all or nothing.

    A parameter, once logged, keeps its value (a changed value is a new run). Each metric
    point is ``{"key", "value", "step"}``; the highest step of each key becomes its latest value.
    """
    all_printable({"params": params, "metrics": metrics})
    points = list(metrics or [])
    if len(points) > get_config()["MAX_BATCH"]:
        raise InvalidInput(
            f"At most {get_config()['MAX_BATCH']} metric points per batch.", code="batch_too_large"
        )
    if run.status in FINAL_RUN_STATUSES and (points or params):
        raise InvalidTransition(f"Run {run.pk} is {run.status}; it takes no more data.")
    _merge_params(run, params or {})
    _add_points(run, points)
    _check_run_size(run)
    run.save()
    return run


def _check_run_size(run: Run) -> None:
    """InvalidInput (``run_too_large``) past MAX_RUN_BYTES: every list of runs carries each
    one's record, and batches add parameters and metric keys without end (runs of 2.4 MB
    of params each: a page of 100 took a worker 3.4 s and 833 MB, and a page may hold 1,000)."""
    record = {"params": run.params, "metrics": run.metrics, "artifacts": run.artifacts,
              "notes": run.notes}  # fmt: skip
    size = len(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str).encode())
    most = get_config()["MAX_RUN_BYTES"]
    if size > most:
        raise InvalidInput(
            f"A run's params, latest metrics, artifacts and notes come to {size} bytes of JSON "
            f"here; at most {most} (MLEXEC_APP['MAX_RUN_BYTES']).",
            code="run_too_large",
        )


def _add_points(run: Run, points: Sequence[Mapping[str, Any]]) -> None:
    rows = [_point(run, p) for p in points]
    MetricPoint.objects.bulk_create(rows)
    _apply_latest(run, _latest_of(run, rows))


def _merge_params(run: Run, params: Mapping[str, Any]) -> None:
    clashes = {k for k, v in params.items() if k in run.params and run.params[k] != v}
    if clashes:
        raise InvalidInput(
            f"Parameters already logged with other values: {sorted(clashes)}.",
            code="param_conflict",
            detail={"keys": sorted(clashes)},
        )
    run.params.update(params)


def _point(run: Run, point: Mapping[str, Any]) -> MetricPoint:
    unknown = set(point) - {"key", "value", "step"}
    if unknown or "key" not in point or "value" not in point:
        raise InvalidInput("Each metric point is {key, value, step}.", code="invalid_point")
    step = point.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or abs(step) > INT_MAX:
        raise InvalidInput("step must be an integer within 32 bits.", code="invalid_number")
    key = str(point["key"])
    return MetricPoint(run=run, key=key, value=_check_metric(key, point["value"]), step=step)


def _latest_of(run: Run, rows: list[MetricPoint]) -> dict[str, float]:
    """Latest value per key among the new points, unless an older batch logged a later step."""
    latest: dict[str, float] = {}
    for key in {r.key for r in rows}:
        top = run.points.filter(key=key).order_by("-step", "-id").first()
        if top is not None:
            latest[key] = top.value
    return latest


def set_run_status(run: Run, status: str) -> Run:
    _check_status(status)
    if status == run.status:
        return run
    if status not in RUN_TRANSITIONS[run.status]:
        raise InvalidTransition(f"A {run.status} run cannot become {status}.")
    run.status = status
    if status in FINAL_RUN_STATUSES:
        run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at", "updated_at"])
    return run


@transaction.atomic
def update_run(run: Run, *, status: str | None = None, **fields: Any) -> Run:
    """Change a run's notes, cost or artifacts, and move its status along its lifecycle."""
    unknown = set(fields) - {"notes", "cost", "artifacts"}
    if unknown:
        raise InvalidInput(f"Unknown run fields: {sorted(unknown)}.")
    all_printable(fields)  # found by the OpenAPI fuzz test: a NUL in an artifact URI was a 500
    for key, value in fields.items():
        if value is not None:
            setattr(run, key, [dict(a) for a in value] if key == "artifacts" else value)
    _check_run_size(run)
    run.save()
    return set_run_status(run, status) if status is not None else run


def metric_history(run: Run, key: str) -> QuerySet[MetricPoint]:
    _printable("key", key)
    return run.points.filter(key=key).order_by("step", "id")


# --- error analysis ---------------------------------------------------------------------------


@transaction.atomic
def record_error_analysis(
    project: Project,
    categories: Mapping[str, int],
    sample_size: int,
    source: str = "manual",
    *,
    run: Run | None = None,
    notes: str = "",
) -> ErrorAnalysis:
    """Record how many of ``sample_size`` examined dev errors carry each tag.

    One error may carry several tags, so counts may add up to more than ``sample_size``;
    each count must lie between 0 and ``sample_size``.
    """
    all_printable({"categories": categories, "source": source, "notes": notes})
    counts = dict(categories)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in counts.values()):
        raise InvalidInput("Category counts must be integers.", code="invalid_number")
    if not isinstance(sample_size, int) or sample_size > INT_MAX:
        raise InvalidInput("sample_size must be an integer within 32 bits.", code="invalid_number")
    try:
        ea.validate(counts, sample_size)
    except ea.ErrorAnalysisError as exc:
        raise InvalidInput(str(exc), code="invalid_error_analysis") from exc
    if run is not None and run.project_id != project.pk:
        raise InvalidInput("The run belongs to another project.", code="run_mismatch")
    analysis = ErrorAnalysis(
        project=project,
        run=run,
        categories=counts,
        sample_size=sample_size,
        source=source,
        notes=notes,
    )
    _full_clean(analysis)
    analysis.save()
    return analysis


def latest_error_analysis(project: Project) -> ErrorAnalysis | None:
    return project.error_analyses.order_by("-created_at", "-id").first()


def category_ceilings(project: Project, dev_error: float | None) -> list[ea.CategoryCeiling]:
    analysis = latest_error_analysis(project)
    if analysis is None or dev_error is None:
        return []
    return ea.ceilings(
        {k: int(v) for k, v in analysis.categories.items()},
        analysis.sample_size,
        dev_error,
        get_config()["CONFIDENCE"],
    )


# --- diagnosis and plan -----------------------------------------------------------------------


def engine_settings() -> Settings:
    config = get_config()
    return Settings(config["MATERIALITY"], config["CONFIDENCE"], config["MIN_DEV_SIZE"])


def diagnosed_run(project: Project, run: Run | None = None) -> Run | None:
    """The run a diagnosis reads: the one asked for, else the newest usable one."""
    if run is not None:
        return run
    usable = project.runs.exclude(status__in=[RunStatus.FAILED, RunStatus.CANCELLED])
    return (
        usable.filter(train__isnull=False, dev__isnull=False).order_by("-created_at", "-id").first()
    )


def measurements(project: Project, run: Run | None) -> Measurements:
    data = latest_assessment(project)
    values: dict[str, Any] = {
        "human": project.human_level,
        "target": project.target_value,
        **{k: getattr(run, k) if run else None for k in SPLIT_KEYS},
        **{f"{k}_size": getattr(data, f"{k}_size") if data else None for k in SPLIT_KEYS},
    }
    return Measurements.from_metric(direction(project), **values)


@dataclass(frozen=True)
class ProjectDiagnosis:
    run: Run | None
    diagnosis: Diagnosis
    categories: list[ea.CategoryCeiling]


def diagnose_project(project: Project, run: Run | None = None) -> ProjectDiagnosis:
    """Diagnose the project from a run (the newest usable one by default)."""
    run = diagnosed_run(project, run)
    result = diagnose(measurements(project, run), engine_settings())
    return ProjectDiagnosis(run, result, category_ceilings(project, result.measurements.dev))


def plan_project(project: Project, pd: ProjectDiagnosis | None = None) -> planner.Plan:
    pd = pd or diagnose_project(project)
    data = latest_assessment(project)
    history = [
        planner.Past(i.rule_id, planner.Status(i.status)) for i in project.interventions.all()
    ]
    return planner.plan(
        planner.PlanInputs(
            diagnosis=pd.diagnosis,
            data_type=project.data_type,
            abstraction_layer=project.abstraction_layer,
            label_quality=data.label_quality if data else None,
            categories=pd.categories,
            history=history,
            materiality=get_config()["MATERIALITY"],
            learning_curve=latest_learning_curve(project),
        )
    )


def latest_learning_curve(project: Project) -> CurveReading | None:
    """The verdict on more data of the project's newest finished learning curve, if any."""
    for job in project.diagnostic_jobs.filter(status=RunStatus.FINISHED).order_by(
        "-finished_at", "-id"
    )[:20]:
        reading = CurveReading.from_report((job.result or {}).get("learning_curve"))
        if reading is not None:
            return reading
    return None


def diagnosis_snapshot(d: Diagnosis) -> dict[str, Any]:
    """A JSON-able summary of a diagnosis, kept with the interventions it justified."""
    return {
        "dominant": d.dominant.value if d.dominant else None,
        "confidence": d.confidence.value,
        "gaps": {
            p.value: {
                "estimate": g.estimate,
                "low": g.interval.low,
                "high": g.interval.high,
                "verdict": g.verdict.value,
            }
            for p, g in d.gaps.items()
        },
        "rules": d.fired(),
    }


@transaction.atomic
def adopt(project: Project, rule_ids: Iterable[str] | None = None) -> list[Intervention]:
    """Turn plan candidates into Intervention rows (all recommended ones by default).

    A rule that already has an open intervention is not adopted twice.
    """
    pd = diagnose_project(project)
    result = plan_project(project, pd)
    wanted = set(rule_ids) if rule_ids is not None else None
    pool = (
        result.recommended + (result.deferred if wanted else []) + (result.tried if wanted else [])
    )
    chosen = [c for c in pool if wanted is None or c.rule_id in wanted]
    if wanted is not None and {c.rule_id for c in chosen} != wanted:
        missing = sorted(wanted - {c.rule_id for c in chosen})
        raise InvalidInput(f"Not in the current plan: {missing}.", code="not_in_plan")
    deferred = {c.rule_id for c in result.deferred}
    if wanted and wanted & deferred:
        raise InvalidTransition(result.deferred_reason, code="compute_deferred")
    return [
        _adopt_one(project, c, pd.diagnosis) for c in chosen if c.state is not planner.State.OPEN
    ]


def _adopt_one(project: Project, c: planner.Candidate, d: Diagnosis) -> Intervention:
    return Intervention.objects.create(
        project=project,
        kind=InterventionKind(c.kind.value),
        priority=c.priority,
        rule_id=c.rule_id,
        title=c.title[:300],
        rationale=c.rationale,
        diagnosis=diagnosis_snapshot(d),
        predicted_gain=c.expected_gain,
    )


@transaction.atomic
def take_up(project: Project, rule_id: str) -> Intervention:
    """The open intervention of ``rule_id``, else a new one: adopted from the plan when the
    plan proposes it (with its expected gain), else on the person's own judgement."""
    open_one = project.interventions.filter(
        rule_id=rule_id, status__in=[InterventionStatus.PROPOSED, InterventionStatus.IN_PROGRESS]
    ).first()
    if open_one is not None:
        return open_one
    try:
        return adopt(project, [rule_id])[0]
    except InvalidInput:  # not in the current plan
        if rule_id not in planner.PLAN_RULES:
            raise
    rule = planner.PLAN_RULES[rule_id]
    return Intervention.objects.create(
        project=project,
        kind=InterventionKind(rule.kind.value),
        priority=rule.kind.priority,
        rule_id=rule_id,
        title=rule.title[:300],
        rationale="Taken up by hand: the current plan does not propose it.",
        diagnosis=diagnosis_snapshot(diagnose_project(project).diagnosis),
    )


@transaction.atomic
def update_intervention(
    intervention: Intervention, *, status: str | None = None, realized_gain: float | None = None
) -> Intervention:
    if status is not None and status != intervention.status:
        if status not in InterventionStatus.values:
            raise InvalidInput(f"Unknown status {status!r}.", code="invalid_choice")
        if status not in INTERVENTION_TRANSITIONS[intervention.status]:
            raise InvalidTransition(f"A {intervention.status} intervention cannot become {status}.")
        intervention.status = status
    if realized_gain is not None:
        if not math.isfinite(realized_gain) or abs(realized_gain) > 1:
            raise InvalidInput(
                "realized_gain is in error-rate points, within [-1, 1].", code="out_of_range"
            )
        intervention.realized_gain = realized_gain
    intervention.save()
    return intervention


# --- cost, gates, classification ----------------------------------------------------------------


COST_FIELDS = (
    "llm_price_per_token",
    "tokens_per_call",
    "calls_per_month",
    "fine_tune_cost",
    "hosting_cost_per_month",
    "throughput_per_second",
    "small_model_cost_per_call",
)
REQUIRED_COST_FIELDS = COST_FIELDS[:5]


def _cost_inputs(values: Mapping[str, Any]) -> cost_mod.CostInputs:
    missing = [k for k in REQUIRED_COST_FIELDS if values.get(k) is None]
    if missing:
        raise InvalidInput(f"Missing cost inputs: {missing}.", code="missing_field")
    inputs: dict[str, Any] = {k: values.get(k) for k in COST_FIELDS}
    if inputs["small_model_cost_per_call"] is None:
        inputs["small_model_cost_per_call"] = 0.0
    return cost_mod.CostInputs(**inputs)


def cost_curve(values: Mapping[str, Any]) -> cost_mod.CostResult:
    try:
        return cost_mod.cost_curve(_cost_inputs(values))
    except cost_mod.CostInputError as exc:
        raise InvalidInput(str(exc), code="invalid_cost_input") from exc


@transaction.atomic
def save_cost_model(project: Project, values: Mapping[str, Any]) -> CostModel:
    inputs = _cost_inputs(values)
    cost_curve(values)  # validates
    model, _ = CostModel.objects.update_or_create(
        project=project, defaults={k: getattr(inputs, k) for k in COST_FIELDS}
    )
    return model


@dataclass(frozen=True)
class ProjectCost:
    """A project's cost curve and where its inputs came from."""

    result: cost_mod.CostResult | None  # None: no cost model saved
    inputs: str  # "measured": the agent's traffic; "typed": the cost model's own figures
    reading: traffic_mod.Reading


def project_cost(project: Project) -> ProjectCost:
    """The cost curve with the agent's measured traffic when the site's source has it, else
    with the typed-in figures; the reading says which and why."""
    reading = traffic_mod.read(project.agent)
    model = CostModel.objects.filter(project=project).first()
    if model is None:
        return ProjectCost(None, "typed", reading)
    inputs = _cost_inputs({k: getattr(model, k) for k in COST_FIELDS})
    used = "typed"
    if reading.traffic is not None:
        inputs, used = cost_mod.with_traffic(inputs, reading.traffic), "measured"
    try:
        return ProjectCost(cost_mod.cost_curve(inputs), used, reading)
    except cost_mod.CostInputError as exc:
        raise InvalidInput(str(exc), code="invalid_cost_input") from exc


def project_cost_curve(project: Project) -> cost_mod.CostResult | None:
    return project_cost(project).result


def stage_gates(project: Project, target: str | None = None) -> list[gates_mod.GateCheck]:
    """The gates between the project's stage and ``target`` (the next stage by default)."""
    target = target or gates_mod.next_stage(project.stage)
    if target is None:
        return []
    data = latest_assessment(project)
    inputs = gates_mod.GateInputs(
        has_problem_statement=bool(project.problem_statement.strip()),
        has_target=project.target_value is not None,
        has_human_level=project.human_level is not None,
        has_split_sizes=bool(data and data.dev_size),
        diagnosis=diagnose_project(project).diagnosis,
        open_data_quality=project.interventions.filter(
            kind=InterventionKind.DATA_QUALITY,
            status__in=[InterventionStatus.PROPOSED, InterventionStatus.IN_PROGRESS],
        ).count(),
        layer=project.abstraction_layer,
        has_cost_model=CostModel.objects.filter(project=project).exists(),
        **_measured_cost_inputs(project),
    )
    return gates_mod.gates_between(project.stage, target, inputs)


def _measured_cost_inputs(project: Project) -> dict[str, bool]:
    """gate.cost_measured's inputs; the traffic source is asked only when the gate applies."""
    if not get_config()["REQUIRE_MEASURED_COST"]:
        return {}
    try:
        cost = project_cost(project)
    except InvalidInput:  # a curve past a float's range is no measured cost
        return {"require_measured_cost": True, "has_measured_cost": False}
    measured = cost.result is not None and cost.inputs == "measured"
    return {"require_measured_cost": True, "has_measured_cost": measured}


def recommendation(project: Project) -> classify_mod.Recommendation:
    return classify_mod.classify(project.data_type, project.abstraction_layer)


# --- lookups ------------------------------------------------------------------------------------


def find_project(ref: str | int, queryset: QuerySet[Project] | None = None) -> Project:
    """A project by id or slug, within ``queryset`` (what the caller may see)."""
    qs = queryset if queryset is not None else Project.objects.all()
    text = str(ref)
    if "\x00" in text:
        raise NotFound("No such project.")
    # An all-digit reference is an id first, then a slug (a project may be named "2024").
    # ASCII digits only: str.isdigit() also says yes to "²" and "١" (int() refuses the first
    # and reads the second as 1); beyond a 63-bit id it can only be a slug.
    is_id = text.isascii() and text.isdigit() and int(text) <= ID_MAX
    project = qs.filter(pk=int(text)).first() if is_id else None
    if project is None:
        # Slugs are unique per owner: only a view over several owners (the CLI's) sees two.
        found = list(qs.filter(slug=text)[:2])
        if len(found) > 1:
            raise InvalidInput(
                f"Several users have a project {text!r}; name it by id.", code="ambiguous_slug"
            )
        project = found[0] if found else None
    if project is None:
        raise NotFound(f"No project {text!r}.")
    return project
