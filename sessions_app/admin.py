"""Admin: sessions by size and activity; a session's events in offset order, read-only."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from sessions_app.models import Entry, Membership, Run, Session

PREVIEW_CHARS = 120


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "title",
        "owner",
        "entries",
        "size",
        "last_activity",
        "closed",
        "events_link",
    )
    list_filter = ("closed", "deleted", "content_type")
    search_fields = ("name", "title", "owner__username")
    ordering = ("-last_activity",)
    readonly_fields = (
        "head",
        "tail",
        "size_bytes",
        "created_at",
        "last_activity",
        "forked_from",
        "fork_seq",
    )
    inlines = (MembershipInline,)
    raw_id_fields = ("owner",)

    @admin.display(description="entries", ordering="head")
    def entries(self, obj: Session) -> int:
        return obj.entry_count

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj: Session) -> str:
        return _human_bytes(obj.size_bytes)

    @admin.display(description="events")
    def events_link(self, obj: Session) -> str:
        url = reverse("admin:sessions_app_entry_changelist") + f"?session__id__exact={obj.pk}"
        return format_html('<a href="{}">events</a>', url)


class RunFilter(admin.SimpleListFilter):
    """Runs of the session being browsed (all runs would be too many to list)."""

    title = "run"
    parameter_name = "run"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        session = request.GET.get("session__id__exact")
        if not session:
            return []
        runs = (
            Entry.objects.filter(session_id=session).exclude(run="").values_list("run", flat=True)
        )
        return [(r, r) for r in sorted(set(runs))[:100]]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.filter(run=self.value()) if self.value() else queryset


@admin.register(Entry)
class EntryAdmin(admin.ModelAdmin):
    list_display = ("offset", "session", "type", "run", "created_at", "preview")
    list_filter = ("type", RunFilter)
    search_fields = ("session__name",)
    ordering = ("session", "seq")
    list_select_related = ("session",)
    readonly_fields = ("session", "offset", "type", "run", "created_at", "pretty_body")
    exclude = ("seq", "body")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="data")
    def preview(self, obj: Entry) -> str:
        text = bytes(obj.body).decode("utf-8", "replace")
        return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"

    @admin.display(description="body")
    def pretty_body(self, obj: Entry) -> str:
        raw = bytes(obj.body)
        try:
            shown = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
        except ValueError:
            shown = raw.hex(" ")
        return format_html("<pre>{}</pre>", shown)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("run_id", "session", "agent", "status", "parent", "started_at", "ended_at")
    list_filter = ("status",)
    search_fields = ("run_id", "session__name", "agent")
    raw_id_fields = ("session", "parent")


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
