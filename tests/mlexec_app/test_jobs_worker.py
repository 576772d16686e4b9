"""A real django-tasks-db worker: it runs queued jobs, and when killed its job ends failed.

Starts ``manage.py db_worker`` as a separate process on a file SQLite database of its own
(settings written to a temporary module), so nothing here depends on the site's TASKS.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("django_tasks_db")

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = """
from tests.settings_mlexec_only import *  # noqa: F403
INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks", "django_tasks_db"]  # noqa: F405
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
TASKS = {{"default": {{"BACKEND": "django_tasks_db.DatabaseBackend"}}}}
"""


class Site:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "worker.sqlite3"
        (tmp_path / "worker_settings.py").write_text(SETTINGS.format(db=str(self.db)))
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "worker_settings",
        }

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def jobs(self) -> dict[int, tuple[str, dict, str]]:
        with sqlite3.connect(self.db, timeout=10) as con:
            rows = con.execute("SELECT id, status, progress, error FROM mlexec_app_diagnosticjob")
            return {
                pk: (status, json.loads(progress), error) for pk, status, progress, error in rows
            }

    def wait_for(self, predicate, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate(self.jobs()):
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out; jobs: {self.jobs()}")


@pytest.mark.slow
@pytest.mark.timeout(300)  # three subprocesses and a worker; slower on a busy machine
def test_the_db_worker_runs_jobs_and_a_killed_worker_leaves_its_job_failed(tmp_path):
    site = Site(tmp_path)
    site.manage("migrate", "-v0")
    site.manage(
        "shell", "-c",
        "from django.contrib.auth.models import User; from mlexec_app import services; "
        "services.create_project(User.objects.create(username='w'), name='W', slug='w')",
    )  # fmt: skip
    queue = ["mlexec", "run-diagnostics", "w", "--dataset", "digits", "--queue"]
    site.manage(*queue, "--diagnostics", "baseline", "--epochs", "3")
    site.manage(*queue, "--diagnostics", "learning_curve", "--epochs", "5000")
    assert {status for status, _, _ in site.jobs().values()} == {"queued"}
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "--interval", "0.2", "--no-startup-delay"],
        cwd=ROOT, env=site.env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        # The short job finishes; the long one is training (an epoch event has been stored).
        site.wait_for(lambda j: j[1][0] == "finished" and j[2][1].get("step") == "epoch")
    finally:
        worker.send_signal(signal.SIGKILL)  # no chance to clean up, like an OOM kill
        worker.wait(timeout=30)
        log.close()
    assert site.jobs()[2][0] == "running"  # nobody said otherwise yet
    time.sleep(1.5)
    assert "Failed 1 stale" in site.manage("mlexec", "reap-jobs", "--stale-after", "1")
    status, _, error = site.jobs()[2]
    assert status == "failed" and "stopped responding" in error
    assert site.jobs()[1][0] == "finished"
