"""Django Tasks (``django-tasks``) task functions of mlexec_app.

Enqueue through :func:`mlexec_app.jobs.start_job`, which creates the job row first and hands
its id to :func:`enqueue`, installed here when the app loads. The backend is the site's
choice (``TASKS`` setting): django-tasks-db's ``DatabaseBackend`` with ``manage.py db_worker``
in production, ``ImmediateBackend`` (runs inline) in tests.
"""

from __future__ import annotations

from typing import Any

from django_tasks import task

from mlexec_app import job_runner, jobs


@task()
def run_diagnostic_job(job_id: int) -> dict[str, Any]:
    """Run one diagnostic job; its row records progress, result and errors."""
    return job_runner.execute(job_id)


def enqueue(job_id: int) -> str:
    """Queue the job on the task backend; the task's id."""
    return str(run_diagnostic_job.enqueue(job_id).id)


jobs.set_enqueuer(enqueue)
