"""Saved delivery audits in the admin: the gap map with the previous run's verdicts beside.

Audits are made by ``manage.py sessions audit URL --save``; the admin only reads them (and may
delete them). Every value shown came from the audited endpoint or the report, and is escaped.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from sessions_app.audit.store import changes
from sessions_app.domain.audit import CAPABILITIES, TITLES
from sessions_app.models import Audit

COLOURS = {"green": "#1a7f37", "amber": "#9a6700", "red": "#cf222e"}


def _badge(verdict: str) -> SafeString:
    colour = COLOURS.get(verdict, "#57606a")
    return format_html('<b style="color:{}">{}</b>', colour, verdict or "—")


@admin.register(Audit)
class AuditAdmin(admin.ModelAdmin):
    list_display = ("url", "protocol", "created_at", "summary")
    list_filter = ("protocol",)
    search_fields = ("url",)
    date_hierarchy = "created_at"
    readonly_fields = ("url", "protocol", "created_at", "summary", "gap_map", "report")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made by the command, which runs the probes

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="gap map (previous run beside)")
    def gap_map(self, obj: Audit) -> SafeString:
        before, changed = changes(obj)
        now = (obj.report or {}).get("gap_map") or {}
        old = ((before.report or {}).get("gap_map") or {}) if before else {}
        moved = {name for name, _, _ in changed}
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    TITLES[name],
                    _badge(str(now.get(name, ""))),
                    _badge(str(old.get(name, ""))) if before else "—",
                    "changed" if name in moved else "",
                )
                for name in CAPABILITIES
            ),
        )
        previous = f"previous: {before.created_at:%Y-%m-%d %H:%M} (#{before.pk})" if before else ""
        return format_html(
            "<table><tr><th>capability</th><th>now</th><th>before</th><th></th></tr>{}</table>"
            "<p>{}</p>",
            rows,
            previous or "no earlier audit of this URL and protocol",
        )
