"""Request and response schemas of the REST API (pydantic, through django-ninja)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema

Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
DataType = Literal["tabular", "image", "audio", "text", "time_series", "other"]
Layer = Literal["llm_prompting", "deep_learning", "traditional_ml"]
Stage = Literal["scoping", "prototype", "diagnose", "iterate", "production"]
RunState = Literal["queued", "running", "cancelling", "cancelled", "finished", "failed"]
InterventionState = Literal["proposed", "in_progress", "done", "abandoned"]
Name = Annotated[str, Field(min_length=1, max_length=200)]
# Integer columns are 32-bit on PostgreSQL; a larger number would fail in the database.
INT_MAX = 2**31 - 1
Count = Annotated[int, Field(ge=1, le=INT_MAX)]
Step = Annotated[int, Field(ge=-INT_MAX, le=INT_MAX)]


class ErrorOut(Schema):
    code: str
    message: str
    detail: Any = None


class ProjectIn(Schema):
    name: Name
    slug: Annotated[str, Field(pattern=r"^[-a-zA-Z0-9_]*$", max_length=100)] = ""
    problem_statement: str = ""
    data_type: DataType = "other"
    abstraction_layer: Layer = "deep_learning"
    metric_name: Annotated[str, Field(min_length=1, max_length=100)] = "error"
    metric_direction: Literal["lower", "higher"] = "lower"
    target_value: Fraction | None = None
    human_level: Fraction | None = None
    bayes_proxy: Annotated[str, Field(max_length=200)] = ""
    stage: Stage = "scoping"
    agent: Annotated[str, Field(max_length=128)] = Field(
        "", description="The agent this project is about: the site's traffic source measures it."
    )


class ProjectPatch(Schema):
    name: Name | None = None
    problem_statement: str | None = None
    data_type: DataType | None = None
    abstraction_layer: Layer | None = None
    metric_name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    metric_direction: Literal["lower", "higher"] | None = None
    target_value: Fraction | None = None
    human_level: Fraction | None = None
    bayes_proxy: Annotated[str, Field(max_length=200)] | None = None
    stage: Stage | None = None
    agent: Annotated[str, Field(max_length=128)] | None = None
    force: bool = Field(False, description="Move the stage even when its gates fail.")


class ProjectOut(Schema):
    id: int
    slug: str
    name: str
    problem_statement: str
    data_type: str
    abstraction_layer: str
    metric_name: str
    metric_direction: str
    target_value: float | None
    human_level: float | None
    bayes_proxy: str
    stage: str
    agent: str
    created_at: datetime
    updated_at: datetime


class AssessmentIn(Schema):
    train_size: Count | None = None
    train_dev_size: Count | None = None
    dev_size: Count | None = None
    test_size: Count | None = None
    class_balance: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = {}
    label_quality: Fraction | None = None
    train_source: Annotated[str, Field(max_length=300)] = ""
    dev_source: Annotated[str, Field(max_length=300)] = ""
    test_source: Annotated[str, Field(max_length=300)] = ""
    notes: str = ""


class AssessmentOut(AssessmentIn):
    id: int
    created_at: datetime


class Artifact(Schema):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    uri: Annotated[str, Field(min_length=1, max_length=2000)]


class PointIn(Schema):
    key: Annotated[str, Field(min_length=1, max_length=100)]
    value: Finite
    step: Step = 0


class RunIn(Schema):
    name: Name
    status: RunState = "running"
    params: dict[str, Any] = {}
    metrics: dict[str, Finite] = Field(
        {}, description="Latest values; train, train_dev, dev, test are the split metric."
    )
    history: list[PointIn] = []
    cost: Money | None = None
    artifacts: list[Artifact] = []
    notes: str = ""


class RunPatch(Schema):
    status: RunState | None = None
    notes: str | None = None
    cost: Money | None = None
    artifacts: list[Artifact] | None = None


class RunOut(Schema):
    id: int
    project: str = Field(..., alias="project.slug")
    name: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, float]
    train: float | None
    train_dev: float | None
    dev: float | None
    test: float | None
    cost: float | None
    artifacts: list[dict[str, Any]]
    source: str
    notes: str
    created_at: datetime
    finished_at: datetime | None


class BatchIn(Schema):
    params: dict[str, Any] = {}
    metrics: list[PointIn] = []


class PointOut(Schema):
    step: int
    value: float
    logged_at: datetime


class HistoryOut(Schema):
    run: int
    key: str
    points: list[PointOut]
    next_offset: int | None = Field(
        None, description="Where the next page starts (pass it as offset); null on the last."
    )


class ErrorAnalysisIn(Schema):
    categories: dict[
        Annotated[str, Field(min_length=1, max_length=100)], Annotated[int, Field(ge=0)]
    ]
    sample_size: Count
    run: int | None = None
    source: Annotated[str, Field(max_length=50)] = "manual"
    notes: str = ""


class CeilingOut(Schema):
    category: str
    count: int
    share: float
    share_low: float
    share_high: float
    ceiling: float
    ceiling_high: float


class ErrorAnalysisOut(Schema):
    id: int
    run: int | None = Field(None, alias="run_id")
    categories: dict[str, int]
    sample_size: int
    source: str
    notes: str
    created_at: datetime


class GapOut(Schema):
    problem: str
    upper_split: str
    lower_split: str
    estimate: float
    low: float
    high: float
    verdict: str
    needed_size: int | None


class FindingOut(Schema):
    rule_id: str
    title: str
    message: str
    verdict: str
    problem: str | None


class RecommendationOut(Schema):
    approach: str
    first_steps: list[str]
    fit: str
    caution: str


class DiagnosisOut(Schema):
    project: str
    run: int | None
    errors: dict[str, float | None]
    sizes: dict[str, int | None]
    dominant: str | None
    confidence: str
    contenders: list[str]
    gaps: list[GapOut]
    findings: list[FindingOut]
    categories: list[CeilingOut]
    recommendation: RecommendationOut


class CandidateOut(Schema):
    rule_id: str
    kind: str
    priority: int
    title: str
    rationale: str
    expected_gain: float | None
    problem: str | None
    state: str


class PlanOut(Schema):
    project: str
    next: CandidateOut | None
    recommended: list[CandidateOut]
    deferred: list[CandidateOut]
    deferred_reason: str
    tried: list[CandidateOut]


class AdoptIn(Schema):
    rule_ids: list[str] | None = Field(
        None, description="Rules of the current plan to adopt; all recommended when left out."
    )


class InterventionOut(Schema):
    id: int
    kind: str
    priority: int
    rule_id: str
    title: str
    rationale: str
    diagnosis: dict[str, Any]
    predicted_gain: float | None
    status: str
    realized_gain: float | None
    created_at: datetime
    updated_at: datetime


class InterventionPatch(Schema):
    status: InterventionState | None = None
    realized_gain: Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)] | None = None


# Bounds far beyond any real deployment, which keep every derived figure finite (an
# absurd ratio such as 1e300 calls over 1e-300 calls/s would overflow the instance count).
Volume = Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)]


class CostIn(Schema):
    llm_price_per_token: Money
    tokens_per_call: Volume
    calls_per_month: Volume
    fine_tune_cost: Money
    hosting_cost_per_month: Money
    throughput_per_second: Annotated[float, Field(ge=1e-6, le=1e12, allow_inf_nan=False)] | None = (
        None
    )
    small_model_cost_per_call: Money = Field(
        0, description="The small model's marginal cost of one call (serving is not free)."
    )


class CostOut(Schema):
    api_cost_per_month: float
    instances: int
    small_model_cost_per_month: float
    savings_per_month: float
    break_even_calls_per_month: float | None
    payback_months: float | None


class TrafficOut(Schema):
    calls_per_month: float
    mean_input_tokens: float | None
    mean_output_tokens: float | None
    api_cost_per_call: float | None
    rated_conversations: int | None


class ProjectCostOut(CostOut):
    inputs: Literal["measured", "typed"] = Field(
        ...,
        description="measured: the agent's traffic from the site's source; typed: the "
        "cost model's own figures.",
    )
    agent: str
    traffic: TrafficOut | None
    note: str = Field(..., description="Why the typed-in figures were used, if they were.")


class GateOut(Schema):
    id: str
    title: str
    passed: bool
    detail: str


class GatesOut(Schema):
    project: str
    stage: str
    to: str | None
    can_move: bool
    gates: list[GateOut]


class ApiKeyIn(Schema):
    name: Name
    projects: list[str] = Field(
        [], max_length=1000, description="Ids or slugs of the projects it may reach."
    )
    all_projects: bool = False


class ApiKeyOut(Schema):
    id: int
    name: str
    prefix: str
    all_projects: bool
    projects: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @staticmethod
    def resolve_projects(obj: Any) -> list[str]:
        return [p.slug for p in obj.projects.all()]


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(
        ..., alias="raw_key", description="The key itself: shown this once, never stored."
    )
