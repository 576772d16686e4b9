"""The delivery audit: probe an existing AI chat endpoint, print its gap map and migration plan.

``python manage.py sessions audit URL --protocol ...`` or, from Python (no Django needed)::

    from sessions_app.audit import run_audit
    report = run_audit("https://chat.example.org/api/chat", protocol="aisdk",
                       headers={"Authorization": "Bearer ..."})
    report.gap_map()   # {"delivery": "red", "continuity": "green", ...}

See docs/sessions/audit.md for each probe, each verdict and the JSON format.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessions_app.audit.probes import AuditInputError, Target
    from sessions_app.audit.run import audit, run_audit

__all__ = ["AuditInputError", "Target", "audit", "run_audit"]

# Where each public name lives. The package imports them on first use: every Django process
# imports ``sessions_app.audit.admin`` (and so this package) when the admin loads, and the
# probes' HTTP and WebSocket clients are not worth a start-up that never audits.
_HOMES = {"AuditInputError": "probes", "Target": "probes", "audit": "run", "run_audit": "run"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
