"""Apply retention: delete expired sessions and compact entries older than their retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import Q
from django.utils import timezone

from sessions_app import log
from sessions_app.conf import setting
from sessions_app.models import Session


class Command(BaseCommand):
    help = (
        "Delete sessions past expires_at, and fold entries older than the retention period "
        "(Session.retention_days, else SESSIONS_APP['RETENTION_DAYS']) into the session's "
        "snapshot. Safe to run at any time, from cron or a scheduler, on any one host."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Report, change nothing.")
        parser.add_argument(
            "--compact-finished",
            type=float,
            metavar="SECONDS",
            help="Also fold the whole log of sessions idle this long with no active run into "
            "their snapshot (readers see the same state; resumes below it get the snapshot).",
        )

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        now = timezone.now()
        expired = Session.objects.filter(expires_at__lt=now)
        deleted = self._delete(expired, dry_run)
        compacted = removed = 0
        default_days = setting("RETENTION_DAYS")
        candidates = Session.objects.filter(expires_at__isnull=True) | Session.objects.filter(
            expires_at__gte=now
        )
        if default_days is None:
            candidates = candidates.filter(retention_days__isnull=False)
        for pk, days in candidates.filter(Q(head__gt=0)).values_list("pk", "retention_days"):
            cutoff = now - timedelta(days=days if days is not None else default_days)
            up_to = log.expired_offset(pk, cutoff)
            if up_to:
                # a session that forks still read is held back (log.forks): not counted
                folded = 0 if dry_run else log.compact(pk, up_to)
                removed += folded
                compacted += bool(folded or dry_run)
        idle = options.get("compact_finished")
        if idle is not None:
            for pk in log.finished_sessions(now - timedelta(seconds=idle)):
                folded = 0 if dry_run else log.compact(pk, log.head_and_tail(pk)[0])
                removed += folded
                compacted += bool(folded or dry_run)
        verb = "would" if dry_run else "did"
        self.stdout.write(
            f"Retention {verb}: delete {deleted} expired sessions; compact {compacted} sessions "
            f"({removed} entries folded into snapshots)."
        )

    def _delete(self, expired: Any, dry_run: bool) -> int:
        count = 0
        for session in expired:
            kept = session.forks.exists()  # a fork still reads this one's history
            if kept and session.deleted:
                continue  # hidden by an earlier pass; removed with its last fork
            count += 1
            if dry_run:
                continue
            if kept:
                Session.objects.filter(pk=session.pk).update(deleted=True)
            else:
                session.delete()
        return count
