"""Admin of diagnostic jobs: start one from the add form, follow it, cancel it, see its plots.

Registered by one import line in :mod:`mlexec_app.admin`.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from mlexec_app import jobs
from mlexec_app.exceptions import MlexecError
from mlexec_app.models import DiagnosticJob, RunStatus

DEFAULT_DIAGNOSTICS = ["label_issues", "learning_curve", "baseline", "slices"]
# Stored results lose key order on PostgreSQL (jsonb): print the splits in this order.
SPLITS = ("train", "train_dev", "dev", "test")


class StartJobForm(forms.ModelForm):
    diagnostics = forms.MultipleChoiceField(
        choices=[(name, name.replace("_", " ")) for name in jobs.DIAGNOSTIC_CHOICES],
        initial=DEFAULT_DIAGNOSTICS,
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = DiagnosticJob
        fields = ["project", "dataset", "diagnostics", "params"]
        help_texts = {"params": 'e.g. {"model": {"kind": "cnn"}, "slice_column": "region"}'}

    def clean(self) -> dict[str, Any]:
        """The API's rules: registered datasets and factories, or the project's data folder."""
        data = super().clean() or {}
        project, dataset = data.get("project"), data.get("dataset")
        if project is not None and dataset:
            try:
                jobs.check_job(
                    project, dataset.strip(), data.get("diagnostics") or [],
                    data.get("params") or {}, trusted=False,
                )  # fmt: skip
            except MlexecError as exc:
                raise forms.ValidationError(exc.message, code=exc.code) from None
        return data


@admin.register(DiagnosticJob)
class DiagnosticJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "dataset", "status", "percent_done", "created_at"]
    list_filter = ["status"]
    search_fields = ["project__name", "dataset"]
    actions = ["cancel_jobs"]
    raw_id_fields = ["project"]
    readonly_fields = [
        "project", "dataset", "diagnostics", "params", "status", "cancel_requested",
        "percent_done", "progress", "error", "run", "task_id", "created_at", "started_at",
        "heartbeat_at", "finished_at", "findings", "learning_curve_plot", "label_issue_plot",
    ]  # fmt: skip

    def get_form(
        self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = StartJobForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["project", "dataset", "diagnostics", "params"]
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: DiagnosticJob, form: Any, change: bool) -> None:
        if change:
            return  # a job is never edited, only cancelled
        obj.created_by = request.user if request.user.is_authenticated else None
        obj.save()
        try:
            jobs.enqueue_job(obj)
        except MlexecError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        obj.refresh_from_db()

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        jobs.fail_stale_jobs()  # a dead worker's job shows as failed, not running
        return super().changelist_view(request, extra_context)

    @admin.action(description="Cancel the selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[DiagnosticJob]) -> None:
        cancelled = 0
        for job in queryset.exclude(status__in=jobs.FINAL):
            jobs.request_cancel(job)
            cancelled += 1
        self.message_user(request, f"Asked {cancelled} job(s) to stop.")

    @admin.display(description="done")
    def percent_done(self, job: DiagnosticJob) -> str:
        return f"{job.fraction_done:.0%}"

    @admin.display(description="findings")
    def findings(self, job: DiagnosticJob) -> SafeString | str:
        result = job.result or {}
        lines = []
        if "learning_curve" in result:
            curve = result["learning_curve"]
            lines.append(f"Learning curve: {curve['verdict']}. {curve['reason']}")
        if "data_quality" in result:
            lines.append(result["data_quality"]["note"])
        if "baseline" in result:
            errors = result["baseline"]["errors"]
            lines.append("Baseline error: " + ", ".join(f"{k} {errors[k]:.3f}" for k in SPLITS))
        if not lines:
            return "—" if job.status != RunStatus.FINISHED else "No findings recorded."
        return format_html("<br>".join(["{}"] * len(lines)), *lines)

    @admin.display(description="learning curve")
    def learning_curve_plot(self, job: DiagnosticJob) -> SafeString | str:
        from mlexec_app.diagnostics import plots

        curve = (job.result or {}).get("learning_curve")
        return plots.learning_curve_svg(curve) if curve else "—"

    @admin.display(description="suspected label errors")
    def label_issue_plot(self, job: DiagnosticJob) -> SafeString | str:
        from mlexec_app.diagnostics import plots

        issues = (job.result or {}).get("label_issues")
        if not issues:
            return "—"
        if issues.get("image_shape"):
            return plots.label_issue_images_svg(issues["issues"], issues["image_shape"])
        rows = "".join(
            format_html(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3f}</td></tr>",
                i["index"],
                i["given"],
                i["suggested"],
                i["given_probability"],
            )  # fmt: skip
            for i in issues["issues"][:50]
        )
        head = "<tr><th>row</th><th>given</th><th>likely</th><th>p(given)</th></tr>"
        return mark_safe(f"<table>{head}{rows}</table>")  # noqa: S308  (cells escaped above)
