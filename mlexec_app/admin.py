"""Admin of mlexec_app: the project page carries its diagnosis, plan and charts."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from mlexec_app import charts, keys, reports, search_start
from mlexec_app.models import (
    ApiKey,
    CostModel,
    DataAssessment,
    ErrorAnalysis,
    Intervention,
    Project,
    Run,
)


def fraction_form(model_class: type, *names: str) -> type[forms.ModelForm]:
    """A model form refusing values outside [0, 1] in ``names``, like the API does."""

    def clean(self: forms.ModelForm) -> dict[str, Any]:
        data = forms.ModelForm.clean(self) or {}
        for name in names:
            value = data.get(name)
            if value is not None and not 0 <= value <= 1:
                self.add_error(name, "A fraction in [0, 1]: 0.05 for 5%.")
        return data

    meta = type("Meta", (), {"model": model_class, "fields": "__all__"})
    return type(f"{model_class.__name__}Form", (forms.ModelForm,), {"Meta": meta, "clean": clean})


class DataAssessmentInline(admin.StackedInline):
    model = DataAssessment
    form = fraction_form(DataAssessment, "label_quality")
    extra = 0
    classes = ["collapse"]


class CostModelInline(admin.StackedInline):
    model = CostModel
    extra = 0
    classes = ["collapse"]


class InterventionInline(admin.TabularInline):
    model = Intervention
    extra = 0
    fields = ["priority", "kind", "title", "predicted_gain", "status", "realized_gain"]
    readonly_fields = ["priority", "kind", "title", "predicted_gain"]
    can_delete = False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "owner",
        "data_type",
        "abstraction_layer",
        "stage",
        "updated_at",
    ]
    list_filter = ["stage", "data_type", "abstraction_layer"]
    search_fields = ["name", "slug", "problem_statement"]
    prepopulated_fields = {"slug": ["name"]}
    raw_id_fields = ["owner"]
    form = fraction_form(Project, "target_value", "human_level")
    inlines = [DataAssessmentInline, CostModelInline, InterventionInline]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        project = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if project is not None:
            context.update(reports.page_context(project), traffic_panel=True)
            context["search_offered"] = search_start.offered(context["plan"])
        return super().change_view(request, object_id, form_url, context)

    def get_urls(self) -> list[Any]:
        start = self.admin_site.admin_view(self.start_search)
        return [
            path("<path:object_id>/start-search/", start, name="mlexec_app_project_search"),
            *super().get_urls(),
        ]

    def start_search(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST only: the plan's hyperparameter step as a search job (the API's service)."""
        project = self.get_object(request, object_id)
        if project is None:
            raise Http404("No such project.")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request, project):
            raise PermissionDenied
        job, problem = search_start.start_from_post(project, request.POST, request.user)
        if job is None:
            self.message_user(request, problem, messages.ERROR)
        else:
            self.message_user(request, f"Search job #{job.pk} started: {job.get_status_display()}.")
        url = reverse("admin:mlexec_app_project_change", args=[project.pk])
        return HttpResponseRedirect(url, status=303)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "project",
        "status",
        "train",
        "train_dev",
        "dev",
        "test",
        "cost",
        "created_at",
    ]
    list_filter = ["status", "source", "project"]
    search_fields = ["name", "project__name"]
    readonly_fields = ["history_chart", "created_at", "updated_at"]
    form = fraction_form(Run, "train", "train_dev", "dev", "test")
    actions = ["compare"]

    @admin.display(description="Metric history")
    def history_chart(self, run: Run) -> str:
        return charts.metric_history(reports.history_series(run)) if run.pk else ""

    @admin.action(description="Compare selected runs side by side")
    def compare(self, request: HttpRequest, queryset: QuerySet[Run]) -> HttpResponse:
        runs = list(queryset.select_related("project").order_by("created_at", "id"))
        key = _shared_key(runs)
        series = {f"#{r.pk} {r.name}": _points(r, key) for r in runs} if key else {}
        context = {
            **self.admin_site.each_context(request),
            "title": "Compare runs",
            "runs": runs,
            "table": comparison_table(runs),
            "chart_key": key or "no shared metric",
            "history_svg": charts.metric_history(series),
        }
        return TemplateResponse(request, "admin/mlexec_app/run/compare.html", context)


def _points(run: Run, key: str) -> list[tuple[int, float]]:
    return reports.chart_points(run, key)


def _shared_key(runs: list[Run]) -> str | None:
    """The metric to overlay: 'dev' when every run logged it, else any key they share."""
    shared = None
    for run in runs:
        logged = set(run.points.order_by().values_list("key", flat=True).distinct())
        shared = logged if shared is None else shared & logged
    if not shared:
        return None
    return "dev" if "dev" in shared else sorted(shared)[0]


def comparison_table(runs: list[Run]) -> list[tuple[str, list[tuple[str, list[Any]]]]]:
    """Sections of (label, one cell per run): splits, other metrics, parameters, cost."""
    splits = [(s, [getattr(r, s) for r in runs]) for s in ("train", "train_dev", "dev", "test")]
    metric_keys = sorted(
        {k for r in runs for k in r.metrics} - {"train", "train_dev", "dev", "test"}
    )
    param_keys = sorted({k for r in runs for k in r.params})
    return [
        ("Split metrics", splits),
        ("Other metrics", [(k, [r.metrics.get(k) for r in runs]) for k in metric_keys]),
        ("Parameters", [(k, [r.params.get(k) for r in runs]) for k in param_keys]),
        ("Run", [("status", [r.status for r in runs]), ("cost", [r.cost for r in runs])]),
    ]


@admin.register(ErrorAnalysis)
class ErrorAnalysisAdmin(admin.ModelAdmin):
    list_display = ["project", "sample_size", "source", "created_at"]
    list_filter = ["source"]


@admin.register(Intervention)
class InterventionAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "project",
        "kind",
        "priority",
        "status",
        "predicted_gain",
        "realized_gain",
    ]
    list_filter = ["status", "kind"]
    list_editable = ["status", "realized_gain"]
    readonly_fields = ["rule_id", "diagnosis", "predicted_gain", "priority"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "prefix", "all_projects", "last_used_at", "revoked_at"]
    fields = [
        "name",
        "owner",
        "all_projects",
        "projects",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    raw_id_fields = ["owner"]
    filter_horizontal = ["projects"]
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            # The admin makes the secret, like the API: shown once, stored hashed.
            prefix, raw = keys.new_raw()
            obj.prefix, obj.hashed_key = prefix, keys.hash_key(raw)
            messages.warning(request, f"The new key is {raw} . Copy it now: it is not stored.")
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        messages.success(request, f"Revoked {count} key(s).")


# The admin autodiscovers admin.py only: loading admin_jobs here registers the jobs' pages.
from mlexec_app import admin_jobs  # noqa: E402, F401
