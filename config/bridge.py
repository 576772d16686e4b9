"""The demo site's one bridge between the two apps: mlexec diagnostic jobs publish their
progress into a durable session, and a cancel in that session stops the job.

Neither app imports the other; the site wires them with
``MLEXEC_APP = {"PROGRESS_PUBLISHER": "config.bridge.publish_job_progress"}``. The job's
session is ``mlexec-job-<id>``, owned by whoever started the job (or the project's owner).
That name is predictable, so the site reserves the prefix (``RESERVED_NAME_PREFIXES``: no door
lets a user create such a name), and the bridge only ever publishes into a session it made for
that very job: one carrying its marker, the job's id and the job's owner. Anything else under
that name (made before the prefix was reserved, or by hand) is refused with
``ForeignJobSession``, which the job logs; nothing is published into it.
the job is one run in it (``job-<id>``, agent ``mlexec``), its progress ``CUSTOM`` events named
``job.progress``. Any member's stop (WebSocket, REST, the chat) cancels the run, and the job
stops at its next check (at most every 0.5 s).
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from sessions_app import log, services
from sessions_app.domain.errors import SessionError
from sessions_app.models import Run, Session

MARKER = "config.bridge"


class ForeignJobSession(RuntimeError):
    """A session holds the job's name but was not made by the bridge for this job."""


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


def job_session(job: Any) -> Session:
    """The session the bridge made for ``job``, made now if there is none yet.

    Raises ForeignJobSession when the name is taken by a session that is not the bridge's for
    this job and this owner.
    """
    owner = job.created_by or job.project.owner
    name = session_name(job)
    marker = {"made_by": MARKER, "mlexec_job": job.pk}
    session = Session.objects.filter(name=name).first()
    if session is None:
        try:
            with transaction.atomic():
                session = Session.objects.create(
                    name=name, owner=owner, title=f"Diagnostics: {job.project}", metadata=marker
                )
        except IntegrityError:  # a concurrent publish of the same job made it first
            session = Session.objects.get(name=name)
    metadata = session.metadata if isinstance(session.metadata, dict) else {}
    ours = all(metadata.get(k) == v for k, v in marker.items())
    if not ours or session.owner_id != owner.pk or session.deleted:
        raise ForeignJobSession(
            f"session {name!r} exists but was not made by the bridge for job {job.pk} of "
            f"user {owner.pk}; refusing to publish the job's progress into it"
        )
    return session


def publish_job_progress(job: Any, event: dict[str, Any]) -> bool:
    """Publish one job event into the job's session; True when someone asked to stop."""
    session = job_session(job)
    try:
        log.append_sync(services.request(session.pk, _events(job, event)))
    except SessionError:
        pass  # e.g. the run was already ended by a cancel that timed out
    stopping = Run.objects.filter(
        session=session, run_id=run_id(job), status__in=["cancelling", "cancelled"]
    )
    return stopping.exists()
