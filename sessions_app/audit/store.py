"""Saved audits: a report into an ``Audit`` row, and the comparison with the one before it.

The only module of the audit that needs Django (the probes and the verdicts do not).
"""

from __future__ import annotations

from typing import Any

from sessions_app.audit.report import to_dict
from sessions_app.domain.audit import CAPABILITIES, Report, compare
from sessions_app.models import Audit


def summary(data: dict[str, Any]) -> str:
    """The gap map in one line (``delivery=red continuity=green ...``), or the problem."""
    if data.get("problem"):
        return ("problem: " + str(data["problem"]))[:200]
    gaps = data.get("gap_map") or {}
    return " ".join(f"{name}={gaps.get(name, '?')}" for name in CAPABILITIES)[:200]


def save(report: Report) -> Audit:
    """Store ``report``; return the new row."""
    data = to_dict(report)
    return Audit.objects.create(
        url=report.url[:2000], protocol=report.protocol[:20], report=data, summary=summary(data)
    )


def changes(audit: Audit) -> tuple[Audit | None, list[tuple[str, str, str]]]:
    """The previous audit of the same URL and protocol, and each verdict that changed since."""
    before = audit.previous()
    if before is None:
        return None, []
    old = (before.report or {}).get("gap_map") or {}
    new = (audit.report or {}).get("gap_map") or {}
    return before, compare(old, new)
