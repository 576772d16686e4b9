"""Rows of mlexec_app: projects, their data, runs, error analyses, interventions, cost models.

The maths lives in :mod:`mlexec_app.methodology`; :mod:`mlexec_app.services` turns these rows
into its dataclasses and back. Field names here are a contract with other code (the
diagnostics jobs write ``Run`` and ``ErrorAnalysis`` rows): add fields, never rename them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


class DataType(models.TextChoices):
    TABULAR = "tabular", "Structured / tabular"
    IMAGE = "image", "Image"
    AUDIO = "audio", "Audio"
    TEXT = "text", "Text"
    TIME_SERIES = "time_series", "Time series"
    OTHER = "other", "Other"


class AbstractionLayer(models.TextChoices):
    LLM_PROMPTING = "llm_prompting", "Prompting an LLM"
    DEEP_LEARNING = "deep_learning", "Deep learning"
    TRADITIONAL_ML = "traditional_ml", "Traditional ML"


class MetricDirection(models.TextChoices):
    LOWER_IS_BETTER = "lower", "Lower is better (an error rate)"
    HIGHER_IS_BETTER = "higher", "Higher is better (accuracy-like)"


class Stage(models.TextChoices):
    SCOPING = "scoping", "Scoping"
    PROTOTYPE = "prototype", "Prototype"
    DIAGNOSE = "diagnose", "Diagnose"
    ITERATE = "iterate", "Iterate"
    PRODUCTION = "production", "Production"


class Project(models.Model):
    """One ML project: the problem, how success is measured, and where it stands."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mlexec_projects"
    )
    name = models.CharField(max_length=200)
    # Unique per owner: a slug another user holds is free to you, so creating a project tells
    # nothing about other users' projects.
    slug = models.SlugField(max_length=100)
    problem_statement = models.TextField(blank=True)
    data_type = models.CharField(max_length=20, choices=DataType.choices, default=DataType.OTHER)
    abstraction_layer = models.CharField(
        max_length=20, choices=AbstractionLayer.choices, default=AbstractionLayer.DEEP_LEARNING
    )
    metric_name = models.CharField(max_length=100, default="error")
    metric_direction = models.CharField(
        max_length=10, choices=MetricDirection.choices, default=MetricDirection.LOWER_IS_BETTER
    )
    # Metric values are fractions in [0, 1], in the metric's own units (0.95 accuracy, 0.05 error).
    target_value = models.FloatField(null=True, blank=True)
    human_level = models.FloatField(
        null=True, blank=True, help_text="Human-level performance or another Bayes-error proxy."
    )
    bayes_proxy = models.CharField(
        max_length=200,
        blank=True,
        help_text="What the human-level figure is, e.g. 'team of experts'.",
    )
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.SCOPING)
    agent = models.CharField(
        max_length=128,
        blank=True,
        help_text="The agent this project is about (prompting an LLM): the site's traffic "
        "source measures its calls for the cost curve (docs/mlexec/cost.md).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "slug"], name="mlexec_project_owner_slug")
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("mlexec_app:project", kwargs={"slug": self.slug})


class DataAssessment(models.Model):
    """What the data looks like at one moment; the newest one is the current one."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assessments")
    train_size = models.PositiveIntegerField(null=True, blank=True)
    train_dev_size = models.PositiveIntegerField(null=True, blank=True)
    dev_size = models.PositiveIntegerField(null=True, blank=True)
    test_size = models.PositiveIntegerField(null=True, blank=True)
    class_balance = models.JSONField(default=dict, blank=True, help_text="label -> share or count")
    label_quality = models.FloatField(
        null=True, blank=True, help_text="Estimated share of correct labels, 0 to 1."
    )
    train_source = models.CharField(max_length=300, blank=True)
    dev_source = models.CharField(max_length=300, blank=True)
    test_source = models.CharField(max_length=300, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Data assessment of {self.project} ({self.created_at:%Y-%m-%d})"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"


class Run(models.Model):
    """One training or evaluation, logged like an experiment tracker logs it.

    ``train``/``train_dev``/``dev``/``test`` hold the project's metric on each split, in the
    metric's own units; other metrics go to ``metrics`` (latest values) and ``MetricPoint``
    (history).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.RUNNING)
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Latest value of each metric.")
    train = models.FloatField(null=True, blank=True)
    train_dev = models.FloatField(null=True, blank=True)
    dev = models.FloatField(null=True, blank=True)
    test = models.FloatField(null=True, blank=True)
    cost = models.FloatField(null=True, blank=True, help_text="Money spent on this run.")
    artifacts = models.JSONField(default=list, blank=True, help_text="[{name, uri}]")
    source = models.CharField(max_length=50, default="api", help_text="api, import, diagnostics…")
    # Where an imported run came from ("mlflow:<run id>"): a rerun of the import updates it.
    external_id = models.CharField(max_length=200, blank=True, default="")
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=~models.Q(external_id=""),
                name="mlexec_run_project_external_id",
            )
        ]

    def __str__(self) -> str:
        return self.name


class MetricPoint(models.Model):
    """One value of one metric at one step of a run (the metric history)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="points")
    key = models.CharField(max_length=100)
    step = models.IntegerField(default=0)
    value = models.FloatField()
    logged_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key", "step", "id"]
        indexes = [models.Index(fields=["run", "key", "step"])]

    def __str__(self) -> str:
        return f"{self.key}@{self.step}={self.value}"


class ErrorAnalysis(models.Model):
    """Counts of tagged dev-set errors over a sample; one error may carry several tags."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="error_analyses")
    run = models.ForeignKey(
        Run, on_delete=models.SET_NULL, null=True, blank=True, related_name="error_analyses"
    )
    sample_size = models.PositiveIntegerField(help_text="How many dev errors were examined.")
    categories = models.JSONField(default=dict, help_text="category -> number of errors tagged")
    source = models.CharField(max_length=50, default="manual", help_text="manual, diagnostics…")
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = ["created_at", "id"]
        verbose_name_plural = "error analyses"

    def __str__(self) -> str:
        return f"Error analysis of {self.project} ({self.sample_size} errors)"


class InterventionKind(models.TextChoices):
    """In the fixed priority order: earlier kinds are tried first."""

    DATA_QUALITY = "data_quality", "Data quality"
    HYPERPARAMETERS = "hyperparameters", "Hyperparameters"
    ARCHITECTURE = "architecture", "Architecture"
    FINE_TUNE = "fine_tune", "Fine-tune a pre-trained model"
    MORE_COMPUTE = "more_compute", "More compute"


class InterventionStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"
    ABANDONED = "abandoned", "Abandoned"


class Intervention(models.Model):
    """A prescribed change, why it was prescribed, what it was expected to gain and did gain."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="interventions")
    kind = models.CharField(max_length=20, choices=InterventionKind.choices)
    priority = models.PositiveSmallIntegerField(help_text="Position of the kind in the order.")
    rule_id = models.CharField(max_length=80)
    title = models.CharField(max_length=300)
    rationale = models.TextField(blank=True)
    diagnosis = models.JSONField(default=dict, blank=True, help_text="The diagnosis it answered.")
    predicted_gain = models.FloatField(null=True, blank=True)
    status = models.CharField(
        max_length=20, choices=InterventionStatus.choices, default=InterventionStatus.PROPOSED
    )
    realized_gain = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "created_at", "id"]

    def __str__(self) -> str:
        return self.title


class CostModel(models.Model):
    """Inputs of the cost curve: LLM API against a fine-tuned small model."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="cost_model")
    llm_price_per_token = models.FloatField()
    tokens_per_call = models.FloatField()
    calls_per_month = models.FloatField()
    fine_tune_cost = models.FloatField(help_text="One-off cost of fine-tuning the small model.")
    hosting_cost_per_month = models.FloatField(help_text="Per serving instance.")
    throughput_per_second = models.FloatField(
        null=True, blank=True, help_text="Calls one instance serves per second; blank: unlimited."
    )
    small_model_cost_per_call = models.FloatField(
        default=0, help_text="The small model's marginal cost of one call (serving is not free)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Cost model of {self.project}"


class ApiKey(models.Model):
    """A key an agent sends as ``Authorization: Bearer <key>``; only its hash is stored."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mlexec_api_keys"
    )
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, unique=True)
    hashed_key = models.CharField(max_length=128)
    all_projects = models.BooleanField(
        default=False, help_text="Reach every project of the owner, not just those listed."
    )
    projects = models.ManyToManyField(Project, blank=True, related_name="api_keys")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


# --- Diagnostic jobs ---
# Created and cancelled by mlexec_app/jobs.py, run by mlexec_app/job_runner.py: one row per
# background job that trains models to produce evidence. Progress and cancellation live here so
# any process (web, worker, CLI) sees them; ``heartbeat_at`` lets a dead worker's job be failed.


class DiagnosticJob(models.Model):
    """A background diagnostics job: what it runs, how far it got, and what it found."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="diagnostic_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="mlexec_diagnostic_jobs",
    )
    dataset = models.CharField(
        max_length=500,
        help_text="A registered dataset (digits) or a .csv/.npz file in the project's data folder.",
    )
    trusted = models.BooleanField(
        default=False,
        help_text="Started by the site owner's CLI: any dataset path or dotted factory.",
    )
    diagnostics = models.JSONField(default=list, help_text="Names of the diagnostics to run.")
    params = models.JSONField(default=dict, blank=True, help_text="Model and dataset options.")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    progress = models.JSONField(default=dict, blank=True, help_text="The latest progress event.")
    fraction_done = models.FloatField(default=0.0)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=100, blank=True)
    run = models.ForeignKey(
        Run, on_delete=models.SET_NULL, null=True, blank=True, related_name="diagnostic_jobs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"Diagnostics #{self.pk} of {self.project} ({self.status})"


class LabelDecision(models.Model):
    """A person's verdict on one label a diagnostic job suspected (the label-review page)."""

    class Verdict(models.TextChoices):
        ACCEPT = "accept", "Accept the suggested label"
        REJECT = "reject", "Keep the given label"

    job = models.ForeignKey(DiagnosticJob, on_delete=models.CASCADE, related_name="label_decisions")
    index = models.PositiveIntegerField(help_text="Row of the job's dataset.")
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    given = models.CharField(max_length=200)
    suggested = models.CharField(max_length=200)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="mlexec_label_decision_once")
        ]

    def __str__(self) -> str:
        return f"{self.verdict} row {self.index} of job {self.job_id}"


class ErrorReview(models.Model):
    """A person's tags on the misclassified dev examples of one diagnostic job.

    The counts of the tags are kept as an :class:`ErrorAnalysis` (``analysis``), the record the
    diagnosis and the planner read; this row keeps which example carries which tags.
    """

    job = models.OneToOneField(DiagnosticJob, on_delete=models.CASCADE, related_name="error_review")
    categories = models.JSONField(default=list, help_text="The categories offered, in order.")
    tags = models.JSONField(default=dict, help_text="dev row (as text) -> its categories")
    analysis = models.OneToOneField(
        ErrorAnalysis, on_delete=models.SET_NULL, null=True, blank=True, related_name="review"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Error review of job {self.job_id}"
