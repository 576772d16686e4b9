"""Admin pages of usage, feedback and dataset exports (issue #22).

- **Usage by agent and day**: runs, tokens, API cost and latency per agent and per day, summed
  by the database from ``Run.usage`` (``Trunc``, ``KT`` and casts: the same on SQLite and
  PostgreSQL), each row linking to its runs.
- **Feedback**: every user's latest rating of each answer (``models.Feedback``, the table the
  commit writes beside each ``sessions.FEEDBACK`` event), filtered by rating, agent, date,
  comment, correction and session, linking to the session and to the answer's events.
- **Exports**: one row per ``sessions export-dataset``, its dataset card rendered, and the card
  as a download (plain text, an attachment).

Everything here is read-only: the log is the truth, these are views of it.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Avg, Count, FloatField, Max, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, TruncDate
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from sessions_app.models import Export, Feedback, Run, UsageByDay

PREVIEW_CHARS = 80
USAGE_DAYS = 30  # the usage page's default window
USAGE_ROWS = 500  # at most this many (agent, day) rows on one page


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- usage by agent and day ------------------------------------------------------------------


def _number(key: str) -> Cast:
    return Cast(KT(f"usage__{key}"), FloatField())


def usage_rows(runs: QuerySet[Run]) -> QuerySet[Any]:
    """Per day (the site's time zone) and agent: runs, runs that reported usage, tokens,
    cost (with its currency; ``currencies`` > 1 means the sum mixes them) and mean latency."""
    return (
        runs.annotate(day=TruncDate("started_at"))
        .values("day", "agent")
        .annotate(**_usage_sums())
        .order_by("-day", "agent")
    )


def _usage_sums() -> dict[str, Any]:
    return {
        "runs": Count("id"),
        "reported": Count("id", filter=Q(usage__isnull=False)),
        "input_tokens": Sum(_number("input_tokens")),
        "output_tokens": Sum(_number("output_tokens")),
        "cost": Sum(_number("cost")),
        "currency": Max(KT("usage__currency")),
        "currencies": Count(KT("usage__currency"), distinct=True),
        "first_token_ms": Avg(_number("first_token_ms")),
        "latency_ms": Avg(_number("latency_ms")),
    }


@admin.register(UsageByDay)
class UsageByDayAdmin(_ReadOnly):
    """One page, not a list of runs: the sums per agent and day over a date range."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        today = timezone.localdate()
        since = _day(request.GET.get("since")) or today - timedelta(days=USAGE_DAYS - 1)
        until = _day(request.GET.get("until")) or today
        agent = request.GET.get("agent", "")
        runs = Run.objects.filter(started_at__date__gte=since, started_at__date__lte=until)
        if agent:
            runs = runs.filter(agent=agent)
        rows = list(usage_rows(runs)[:USAGE_ROWS])
        changelist = reverse("admin:sessions_app_run_changelist")
        total = runs.aggregate(**_usage_sums())
        for row in (*rows, total):
            row["money"] = _money(row)
        for row in rows:
            day = row["day"]
            row["runs_url"] = changelist + "?" + urlencode(
                {"agent": row["agent"], "started_at__year": day.year,
                 "started_at__month": day.month, "started_at__day": day.day}
            )  # fmt: skip
        agents = Run.objects.order_by("agent").values_list("agent", flat=True).distinct()[:200]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Usage by agent and day",
            "rows": rows,
            "total": total,
            "truncated": len(rows) == USAGE_ROWS,
            "since": since,
            "until": until,
            "agent": agent,
            "agents": list(agents),
            "runs_url": changelist,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/sessions_app/usage_by_day.html", context)


def _money(row: dict[str, Any]) -> str:
    if row["cost"] is None:
        return "-"
    money = f"{row['cost']:.6g} {row['currency'] or ''}".strip()
    return money + (" (mixed currencies)" if row["currencies"] > 1 else "")


def _day(text: str | None) -> date | None:
    try:
        return parse_date(text or "")
    except ValueError:  # well formed but not a date (2026-02-30)
        return None


# --- feedback --------------------------------------------------------------------------------


class _Has(admin.SimpleListFilter):
    field = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "yes"), ("no", "no")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "yes":
            return queryset.exclude(**{self.field: ""})
        if self.value() == "no":
            return queryset.filter(**{self.field: ""})
        return queryset


class HasComment(_Has):
    title = parameter_name = "comment"
    field = "comment"


class HasCorrection(_Has):
    title = parameter_name = "correction"
    field = "correction"


class RatedSession(admin.SimpleListFilter):
    """The sessions rated most recently (any session by the ``session`` id in the URL)."""

    title = "session"
    parameter_name = "session"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        recent = (
            Feedback.objects.values("session_id", "session__name")
            .annotate(last=Max("rated_at"))
            .order_by("-last")[:20]
        )
        shown = [(str(row["session_id"]), row["session__name"]) for row in recent]
        chosen = self.value()
        if chosen and chosen not in {pk for pk, _ in shown} and chosen.isdigit():
            name = Feedback.objects.filter(session_id=chosen).values_list("session__name")[:1]
            shown += [(chosen, row[0]) for row in name]
        return shown

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(session_id=value) if value.isdigit() else queryset.none()


@admin.register(Feedback)
class FeedbackAdmin(_ReadOnly):
    list_display = (
        "rated_at",
        "rating",
        "agent",
        "user",
        "session_link",
        "message_link",
        "comment_preview",
        "corrected",
    )
    list_filter = (
        "rating",
        ("agent", admin.AllValuesFieldListFilter),
        "rated_at",
        HasComment,
        HasCorrection,
        RatedSession,
    )
    search_fields = ("session__name", "message", "user", "comment")
    date_hierarchy = "rated_at"
    ordering = ("-rated_at", "-id")
    list_select_related = ("session",)
    readonly_fields = (
        "session",
        "message",
        "user",
        "rating",
        "comment",
        "correction",
        "run_id",
        "agent",
        "seq",
        "rated_at",
    )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the rating is on the log: a row deleted here would come back wrong

    @admin.display(description="session", ordering="session__name")
    def session_link(self, obj: Feedback) -> SafeString:
        url = reverse("admin:sessions_app_session_change", args=[obj.session_id])
        return format_html('<a href="{}">{}</a>', url, obj.session.name)

    @admin.display(description="message", ordering="message")
    def message_link(self, obj: Feedback) -> SafeString:
        """The answer's events (its run's), or the session's events if the run is unknown."""
        query: dict[str, str | int] = {"session__id__exact": obj.session_id}
        if obj.run_id:
            query["run"] = obj.run_id
        url = reverse("admin:sessions_app_entry_changelist") + "?" + urlencode(query)
        return format_html('<a href="{}">{}</a>', url, obj.message)

    @admin.display(description="comment")
    def comment_preview(self, obj: Feedback) -> str:
        text = obj.comment
        return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"

    @admin.display(description="corrected", boolean=True)
    def corrected(self, obj: Feedback) -> bool:
        return bool(obj.correction)


# --- exports ---------------------------------------------------------------------------------


@admin.register(Export)
class ExportAdmin(_ReadOnly):
    list_display = ("created_at", "conversations", "splits", "ratings", "took", "out")
    date_hierarchy = "created_at"
    readonly_fields = ("created_at", "conversations", "took", "out", "dataset_card")
    fields = readonly_fields

    def get_urls(self) -> list[Any]:
        download = self.admin_site.admin_view(self.card_download)
        return [
            path("<int:pk>/card.md", download, name="sessions_app_export_card"),
            *super().get_urls(),
        ]

    def card_download(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The card as Markdown, downloaded: plain text, an attachment, never rendered."""
        from django.core.exceptions import PermissionDenied
        from django.shortcuts import get_object_or_404

        from sessions_app.export import card_text

        export = get_object_or_404(Export, pk=pk)
        if not self.has_view_permission(request, export):
            raise PermissionDenied
        response = HttpResponse(
            card_text(export.card, markdown=True), content_type="text/plain; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="dataset-card-{pk}.md"'
        response["X-Content-Type-Options"] = "nosniff"
        return response

    @admin.display(description="splits")
    def splits(self, obj: Export) -> str:
        return _pairs((obj.card or {}).get("splits"))

    @admin.display(description="ratings")
    def ratings(self, obj: Export) -> str:
        return _pairs((obj.card or {}).get("ratings"))

    @admin.display(description="took", ordering="took_seconds")
    def took(self, obj: Export) -> str:
        return f"{obj.took_seconds:.1f} s"

    @admin.display(description="dataset card")
    def dataset_card(self, obj: Export) -> SafeString:
        card = obj.card or {}
        dates = card.get("date_range") or {}
        rows = [
            ("conversations", f"{card.get('conversations')} ({card.get('messages')} messages)"),
            ("format", card.get("format")),
            ("splits", _pairs(card.get("splits"))),
            ("fractions", _pairs(card.get("fractions"))),
            ("sessions created", f"{dates.get('first')} to {dates.get('last')}"),
            ("ratings", _pairs(card.get("ratings")) or "none"),
            ("redaction", card.get("redaction")),
            ("redactions", _pairs(card.get("redactions")) or "none"),
            ("duplicates dropped", card.get("duplicates_dropped")),
            ("sessions left out", card.get("sessions_left_out")),
            ("filters", _pairs(card.get("filters"))),
            ("seed", card.get("seed")),
            ("files", _pairs(card.get("files")) or "stdout"),
        ]
        download = reverse("admin:sessions_app_export_card", args=[obj.pk])
        return format_html(
            '<table>{}</table><p><a href="{}">Download the card (Markdown)</a></p>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
            download,
        )


def _pairs(mapping: Any) -> str:
    if not isinstance(mapping, dict):
        return "" if mapping is None else str(mapping)
    return ", ".join(f"{key}: {value}" for key, value in mapping.items())
