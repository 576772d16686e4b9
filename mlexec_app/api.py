"""REST API of mlexec_app (django-ninja router, mounted by the site).

Thin edges: each handler parses input, calls :mod:`mlexec_app.services`, returns a schema.
Agents authenticate with ``Authorization: Bearer <api key>``, browsers with the Django
session. What a caller may not see answers 404, exactly like what does not exist.
Every error body is ``{"code", "message", "detail"}``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Query, Router, Status
from ninja.pagination import paginate

from mlexec_app import keys, reports, services
from mlexec_app.api_common import (
    ERRORS,
    ApiKeyAuth,
    BoundedPagination,
    CookieAuth,
    coded_errors,
    domain_errors,
    intervention_of,
    principal,
    project_of,
    run_of,
    visible,
)
from mlexec_app.api_jobs import jobs_router
from mlexec_app.exceptions import Forbidden, InvalidInput, NotFound
from mlexec_app.methodology.gates import STAGES, next_stage
from mlexec_app.models import ApiKey, Intervention, Project, Run
from mlexec_app.schemas import (
    AdoptIn,
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    AssessmentIn,
    AssessmentOut,
    BatchIn,
    CostIn,
    CostOut,
    DiagnosisOut,
    ErrorAnalysisIn,
    ErrorAnalysisOut,
    GatesOut,
    HistoryOut,
    InterventionOut,
    InterventionPatch,
    PlanOut,
    ProjectCostOut,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    RunIn,
    RunOut,
    RunPatch,
)

router = Router(tags=["mlexec"], auth=[ApiKeyAuth(), CookieAuth()])
router.add_decorator(coded_errors, mode="view")
router.add_decorator(domain_errors, mode="operation")


# --- projects ------------------------------------------------------------------------------------


@router.get("/projects", response=list[ProjectOut])
@paginate(BoundedPagination)
def list_projects(request: HttpRequest) -> QuerySet[Project]:
    return visible(request).order_by("-updated_at", "-id")


@router.post("/projects", response={201: ProjectOut, **ERRORS})
def create_project(request: HttpRequest, payload: ProjectIn) -> Status:
    who = principal(request)
    if who.key is not None and not who.key.all_projects:
        raise Forbidden("This key is scoped to some projects; it cannot create others.")
    project = services.create_project(who.user, **payload.dict())
    if who.key is not None:
        who.key.projects.add(project)
    return Status(201, project)


@router.get("/projects/{ref}", response={200: ProjectOut, **ERRORS})
def get_project(request: HttpRequest, ref: str) -> Project:
    return project_of(request, ref)


# Project fields a PATCH may set to null; the others only take a value.
NULLABLE = frozenset({"target_value", "human_level"})


@router.patch("/projects/{ref}", response={200: ProjectOut, **ERRORS})
def update_project(request: HttpRequest, ref: str, payload: ProjectPatch) -> Project:
    fields = payload.dict(exclude_unset=True)
    force = fields.pop("force", False)
    nulls = sorted(key for key, value in fields.items() if value is None and key not in NULLABLE)
    if nulls:
        raise InvalidInput(f"These fields cannot be null: {', '.join(nulls)}.", code="invalid_null")
    return services.update_project(project_of(request, ref), force=force, **fields)


@router.get("/projects/{ref}/gates", response={200: GatesOut, **ERRORS})
def gates(request: HttpRequest, ref: str, to: str | None = None) -> dict[str, Any]:
    project = project_of(request, ref)
    if to is not None and to not in STAGES:
        raise InvalidInput(f"Unknown stage {to!r}.", code="invalid_choice")
    checks = services.stage_gates(project, to)
    target = to or next_stage(project.stage)
    return {
        "project": project.slug,
        "stage": project.stage,
        "to": target,
        "can_move": all(c.passed for c in checks),
        "gates": checks,
    }


# --- data assessments ----------------------------------------------------------------------------


@router.post("/projects/{ref}/assessments", response={201: AssessmentOut, **ERRORS})
def create_assessment(request: HttpRequest, ref: str, payload: AssessmentIn) -> Status:
    return Status(201, services.record_assessment(project_of(request, ref), **payload.dict()))


@router.get("/projects/{ref}/assessments", response={200: list[AssessmentOut], **ERRORS})
@paginate(BoundedPagination)
def list_assessments(request: HttpRequest, ref: str) -> Any:
    return project_of(request, ref).assessments.all()


# --- runs ----------------------------------------------------------------------------------------


@router.post("/projects/{ref}/runs", response={201: RunOut, **ERRORS})
def create_run(request: HttpRequest, ref: str, payload: RunIn) -> Status:
    data = payload.dict()
    data["artifacts"] = [dict(a) for a in data["artifacts"]]
    return Status(201, services.record_run(project_of(request, ref), **data))


@router.get("/projects/{ref}/runs", response={200: list[RunOut], **ERRORS})
@paginate(BoundedPagination)
def list_runs(request: HttpRequest, ref: str) -> QuerySet[Run]:
    return project_of(request, ref).runs.select_related("project").order_by("-created_at", "-id")


@router.get("/runs/{run_id}", response={200: RunOut, **ERRORS})
def get_run(request: HttpRequest, run_id: int) -> Run:
    return run_of(request, run_id)


@router.patch("/runs/{run_id}", response={200: RunOut, **ERRORS})
def update_run(request: HttpRequest, run_id: int, payload: RunPatch) -> Run:
    return services.update_run(run_of(request, run_id), **payload.dict(exclude_unset=True))


@router.post("/runs/{run_id}/log-batch", response={200: RunOut, **ERRORS})
def log_batch(request: HttpRequest, run_id: int, payload: BatchIn) -> Run:
    points = [p.dict() for p in payload.metrics]
    return services.log_batch(run_of(request, run_id), params=payload.params, metrics=points)


# Points of one history page. A run takes any number of points (1,000 a batch), and a whole
# history of 100,000 points took one worker 4.3-5.3 s (load 4) and 160 MB at its peak.
HISTORY_PAGE = 10_000


@router.get("/runs/{run_id}/metrics/{key}", response={200: HistoryOut, **ERRORS})
def metric_history(
    request: HttpRequest,
    run_id: int,
    key: str,
    offset: int = Query(0, ge=0, le=10**9),
    limit: int = Query(HISTORY_PAGE, ge=1, le=HISTORY_PAGE),
) -> dict[str, Any]:
    run = run_of(request, run_id)
    points = list(services.metric_history(run, key)[offset : offset + limit + 1])
    more = offset + limit if len(points) > limit else None
    return {"run": run.pk, "key": key, "points": points[:limit], "next_offset": more}


# --- error analysis, diagnosis, plan -------------------------------------------------------------


@router.post("/projects/{ref}/error-analyses", response={201: ErrorAnalysisOut, **ERRORS})
def create_error_analysis(request: HttpRequest, ref: str, payload: ErrorAnalysisIn) -> Any:
    project = project_of(request, ref)
    run = run_of(request, payload.run) if payload.run is not None else None
    analysis = services.record_error_analysis(
        project,
        payload.categories,
        payload.sample_size,
        payload.source,
        run=run,
        notes=payload.notes,
    )
    return Status(201, analysis)


@router.get("/projects/{ref}/error-analyses", response={200: list[ErrorAnalysisOut], **ERRORS})
@paginate(BoundedPagination)
def list_error_analyses(request: HttpRequest, ref: str) -> Any:
    return project_of(request, ref).error_analyses.all()


@router.get("/projects/{ref}/diagnosis", response={200: DiagnosisOut, **ERRORS})
def diagnosis(request: HttpRequest, ref: str, run: int | None = None) -> dict[str, Any]:
    project = project_of(request, ref)
    chosen = run_of(request, run) if run is not None else None
    if chosen is not None and chosen.project_id != project.pk:
        raise NotFound(f"No run {run} in this project.")
    return reports.diagnosis_payload(project, services.diagnose_project(project, chosen))


@router.get("/projects/{ref}/plan", response={200: PlanOut, **ERRORS})
def plan(request: HttpRequest, ref: str) -> dict[str, Any]:
    project = project_of(request, ref)
    return reports.plan_payload(project, services.plan_project(project))


@router.post("/projects/{ref}/interventions", response={201: list[InterventionOut], **ERRORS})
def adopt(request: HttpRequest, ref: str, payload: AdoptIn) -> Status:
    return Status(201, services.adopt(project_of(request, ref), payload.rule_ids))


@router.get("/projects/{ref}/interventions", response={200: list[InterventionOut], **ERRORS})
@paginate(BoundedPagination)
def list_interventions(request: HttpRequest, ref: str) -> Any:
    return project_of(request, ref).interventions.all()


@router.patch("/interventions/{intervention_id}", response={200: InterventionOut, **ERRORS})
def update_intervention(
    request: HttpRequest, intervention_id: int, payload: InterventionPatch
) -> Intervention:
    found = intervention_of(request, intervention_id)
    return services.update_intervention(found, **payload.dict(exclude_unset=True))


# --- cost curve ----------------------------------------------------------------------------------


@router.post("/cost-curve", response={200: CostOut, **ERRORS})
def cost_curve(request: HttpRequest, payload: CostIn) -> Any:
    return services.cost_curve(payload.dict())


@router.put("/projects/{ref}/cost-model", response={200: ProjectCostOut, **ERRORS})
def save_cost_model(request: HttpRequest, ref: str, payload: CostIn) -> Any:
    project = project_of(request, ref)
    services.save_cost_model(project, payload.dict())
    return reports.cost_payload(services.project_cost(project))


@router.get("/projects/{ref}/cost-model", response={200: ProjectCostOut, **ERRORS})
def get_cost_curve(request: HttpRequest, ref: str) -> Any:
    """The saved cost model's curve, with the agent's measured traffic when the site has it."""
    cost = services.project_cost(project_of(request, ref))
    if cost.result is None:
        raise NotFound("This project has no cost model yet; PUT one.")
    return reports.cost_payload(cost)


# --- API keys (browser session only: a key never mints keys) -------------------------------------


def _session_user(request: HttpRequest) -> Any:
    who = principal(request)
    if who.key is not None:
        raise Forbidden(
            "Manage API keys with a logged-in session, not with a key.", code="session_required"
        )
    return who.user


@router.post("/api-keys", response={201: ApiKeyCreated, **ERRORS})
def create_key(request: HttpRequest, payload: ApiKeyIn) -> Status:
    user = _session_user(request)
    mine = Project.objects.filter(owner=user)
    # One lookup a distinct reference: 100,000 repeats of one slug held a worker for 45 s.
    projects = [services.find_project(ref, mine) for ref in dict.fromkeys(payload.projects)]
    key, raw = keys.create_api_key(
        user, payload.name, projects=projects, all_projects=payload.all_projects
    )
    key.raw_key = raw  # type: ignore[attr-defined]  # shown in this response only
    return Status(201, key)


@router.get("/api-keys", response={200: list[ApiKeyOut], **ERRORS})
@paginate(BoundedPagination)
def list_keys(request: HttpRequest) -> Any:
    mine = ApiKey.objects.filter(owner=_session_user(request))
    return mine.prefetch_related("projects").order_by("-created_at", "-id")


@router.delete("/api-keys/{key_id}", response={200: ApiKeyOut, **ERRORS})
def revoke_key(request: HttpRequest, key_id: int) -> ApiKey:
    return keys.revoke(_session_user(request), key_id)


router.add_router("", jobs_router)
