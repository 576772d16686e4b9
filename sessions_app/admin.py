"""Admin: sessions by size and activity; a session's events in offset order, read-only."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from sessions_app import keys, log, services
from sessions_app.conf import setting
from sessions_app.domain import control
from sessions_app.domain.errors import SessionError
from sessions_app.models import ApiKey, Entry, Membership, Run, Session, Turn

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


class StuckFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "health"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("stuck", "running, agent silent"), ("failed", "failed")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "stuck":
            quiet = timezone.now() - timedelta(
                seconds=(setting("AGENT_HEARTBEAT_TIMEOUT") or 60) / 2
            )
            return queryset.filter(status="running", heartbeat_at__lt=quiet)
        if self.value() == "failed":
            return queryset.filter(status="failed")
        return queryset


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    """Runs as a tree: each run under its parent, with status and duration."""

    list_display = (
        "tree",
        "session",
        "agent",
        "status",
        "reason",
        "started_at",
        "took",
        "heartbeat_at",
        "cost",
    )
    list_filter = ("status", StuckFilter)
    date_hierarchy = "started_at"  # and "Usage by agent and day" above the list (admin_usage)
    search_fields = ("run_id", "session__name", "agent")
    raw_id_fields = ("session", "parent")
    list_select_related = ("session", "parent")
    ordering = ("session", "started_at", "pk")
    actions = ("cancel_runs",)
    readonly_fields = (
        "status",
        "started_seq",
        "started_at",
        "ended_at",
        "heartbeat_at",
        "cancel_deadline",
    )

    @admin.display(description="cost", ordering="usage__cost")
    def cost(self, obj: Run) -> str:
        """What the run reported it cost (sessions.USAGE), with its tokens and model."""
        usage = obj.usage or {}
        if not usage:
            return "-"
        cost = usage.get("cost")
        money = f"{cost:g} {usage.get('currency', '')}".strip() if cost is not None else "-"
        tokens = f"{usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} tok"
        return f"{money} ({tokens}, {usage.get('model', '?')})"

    @admin.display(description="run", ordering="run_id")
    def tree(self, obj: Run) -> str:
        depth, parent = 0, obj.parent
        while parent is not None and depth < 10:
            depth, parent = depth + 1, parent.parent
        return format_html("{}{}", "\u2003" * depth + ("\u2514 " if depth else ""), obj.run_id)

    @admin.display(description="duration")
    def took(self, obj: Run) -> str:
        end = obj.ended_at or timezone.now()
        return f"{(end - obj.started_at).total_seconds():.1f} s"

    @admin.action(description="Cancel the selected runs (the agent is asked to stop)")
    def cancel_runs(self, request: HttpRequest, queryset: Any) -> None:
        asked = 0
        for run in queryset.exclude(status__in=["finished", "cancelled", "failed"]):
            try:
                log.append_sync(
                    services.request(run.session_id, control.cancel(run.run_id, "admin"))
                )
                asked += 1
            except SessionError as exc:
                self.message_user(request, f"{run.run_id}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Asked {asked} run(s) to stop.")


class TurnHealth(admin.SimpleListFilter):
    title = "health"
    parameter_name = "health"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("stuck", "claimed, lease run out"),
            ("waiting", "queued for over a minute"),
            ("retried", "tried more than once"),
        ]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        now = timezone.now()
        if self.value() == "stuck":
            return queryset.filter(state="claimed", lease_until__lt=now)
        if self.value() == "waiting":
            return queryset.filter(state="queued", created_at__lt=now - timedelta(minutes=1))
        if self.value() == "retried":
            return queryset.filter(attempts__gt=1)
        return queryset


@admin.register(Turn)
class TurnAdmin(admin.ModelAdmin):
    """Turns: the user messages waiting for, or answered by, agent workers."""

    list_display = (
        "pk",
        "session",
        "agent",
        "state",
        "attempts",
        "worker",
        "age",
        "lease_until",
        "reason",
    )
    list_filter = ("state", TurnHealth, "agent")
    search_fields = ("session__name", "message", "agent", "worker", "run_id")
    raw_id_fields = ("session", "key")
    list_select_related = ("session",)
    ordering = ("-pk",)
    actions = ("requeue", "abandon")
    readonly_fields = (
        "message",
        "message_seq",
        "run_id",
        "attempts",
        "worker",
        "key",
        "lease_until",
        "created_at",
        "claimed_at",
        "ended_at",
    )

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: Turn) -> str:
        end = obj.ended_at or timezone.now()
        return f"{(end - obj.created_at).total_seconds():.1f} s"

    @admin.action(description="Offer again (a failed or stuck turn gets a new attempt)")
    def requeue(self, request: HttpRequest, queryset: Any) -> None:
        done = 0
        for turn in queryset.exclude(state="queued"):
            if turn.state == "claimed":
                self.message_user(
                    request,
                    f"turn {turn.pk} is claimed: cancel its run, or wait for its lease",
                    messages.WARNING,
                )
                continue
            turn.state, turn.ended_at, turn.reason = "queued", None, "re-queued in the admin"
            turn.save(update_fields=["state", "ended_at", "reason"])
            done += 1
        if done:
            async_to_sync(log.wake_workers)(set(queryset.values_list("agent", flat=True)))
        self.message_user(request, f"Offered {done} turn(s) again.")

    @admin.action(description="Abandon (no agent will answer them)")
    def abandon(self, request: HttpRequest, queryset: Any) -> None:
        count = queryset.filter(state="queued").update(
            state="abandoned", reason="abandoned in the admin", ended_at=timezone.now()
        )
        self.message_user(request, f"Abandoned {count} queued turn(s).")


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("user", "name", "all_sessions", "sessions", "agents", "revoked_at")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("agents"):  # a worker key reaches sessions through the turns it holds
            if data.get("all_sessions") or data.get("sessions"):
                raise forms.ValidationError(
                    "A worker key (agents) reaches sessions through their turns only: leave "
                    "'all sessions' and the sessions empty."
                )
            return data
        # The scope is always explicit: a key with neither would reach nothing, one with both
        # would read ambiguously.
        if bool(data.get("all_sessions")) == bool(data.get("sessions")):
            raise forms.ValidationError(
                "Tick 'all sessions' or choose the sessions the key reaches (not both)."
            )
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = (
        "name",
        "user",
        "prefix",
        "all_sessions",
        "agents",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("revoked_at", "all_sessions")
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    filter_horizontal = ("sessions",)
    exclude = ("hashed",)
    actions = ("revoke",)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        made, secret = keys.create_key(
            obj.user,
            obj.name,
            form.cleaned_data["sessions"],
            all_sessions=obj.all_sessions,
            agents=obj.agents,
        )
        obj.pk, obj.prefix, obj.hashed, obj.created_at = (
            made.pk,
            made.prefix,
            made.hashed,
            made.created_at,
        )
        obj._state.adding = False
        self.message_user(
            request, f"The key (shown once, store it now): {secret}", messages.SUCCESS
        )

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for key in queryset:
            keys.revoke(key)


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


from sessions_app import admin_usage as _usage_admin  # noqa: E402, F401  (usage, feedback, exports)
from sessions_app.audit import admin as _audit_admin  # noqa: E402, F401  (saved delivery audits)
