"""The demo site's one bridge between the two apps: mlexec diagnostic jobs publish their
progress into a durable session, and a cancel in that session stops the job.

Neither app imports the other; the site wires them with
``MLEXEC_APP = {"PROGRESS_PUBLISHER": "config.bridge.publish_job_progress"}``. The job's
session is ``mlexec-job-<id>``, owned by whoever started the job (or the project's owner);
the job is one run in it (``job-<id>``, agent ``mlexec``), its progress ``CUSTOM`` events named
``job.progress``. Any member's stop (WebSocket, REST, the chat) cancels the run, and the job
stops at its next check (at most every 0.5 s).
"""

from __future__ import annotations

from typing import Any

from sessions_app import log, services
from sessions_app.domain.errors import SessionError
from sessions_app.models import Run, Session


def session_name(job: Any) -> str:
    return f"mlexec-job-{job.pk}"


def run_id(job: Any) -> str:
    return f"job-{job.pk}"


def _events(job: Any, event: dict[str, Any]) -> list[dict[str, Any]]:
    run = run_id(job)
    progress = {
        "type": "CUSTOM",
        "run": run,
        "agent": "mlexec",
        "data": {"name": "job.progress", "value": event},
    }
    kind = event.get("type")
    if kind == "started":
        return [{"type": "RUN_STARTED", "run": run, "agent": "mlexec"}, progress]
    if kind == "finished":
        return [progress, {"type": "RUN_FINISHED", "run": run, "data": {"outcome": "success"}}]
    if kind == "cancelled":
        return [progress, {"type": "RUN_FINISHED", "run": run, "data": {"outcome": "cancelled"}}]
    if kind == "failed":
        return [
            progress,
            {"type": "RUN_ERROR", "run": run, "data": {"message": str(event.get("error"))[:2000]}},
        ]
    return [progress]


def publish_job_progress(job: Any, event: dict[str, Any]) -> bool:
    """Publish one job event into the job's session; True when someone asked to stop."""
    owner = job.created_by or job.project.owner
    session, _ = Session.objects.get_or_create(
        name=session_name(job),
        defaults={
            "owner": owner,
            "title": f"Diagnostics: {job.project}",
            "metadata": {"mlexec_job": job.pk},
        },
    )
    try:
        log.append_sync(services.request(session.pk, _events(job, event)))
    except SessionError:
        pass  # e.g. the run was already ended by a cancel that timed out
    stopping = Run.objects.filter(
        session=session, run_id=run_id(job), status__in=["cancelling", "cancelled"]
    )
    return stopping.exists()
