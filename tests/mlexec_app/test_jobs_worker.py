"""A real django-tasks-db worker: it runs queued jobs, and when killed its job ends failed.

The worker runs each job's diagnostics in a child process; SIGKILL on the worker must take
that child with it and leave the job to be failed by the next worker once it is stale.

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
MLEXEC_APP = {{"JOB_STALE_AFTER": {stale}}}
"""
STALE_AFTER = 3


class Site:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "worker.sqlite3"
        (tmp_path / "worker_settings.py").write_text(
            SETTINGS.format(db=str(self.db), stale=STALE_AFTER)
        )
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

    def worker(self, log) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--interval", "0.2", "--no-startup-delay"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_for(self, predicate, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate(self.jobs()):
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out; jobs: {self.jobs()}")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


@pytest.mark.slow
@pytest.mark.engine_independent  # its worker's SQLite file is its own whatever the pass's engines
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.timeout(300)  # three subprocesses and two workers; slower on a busy machine
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
    worker = site.worker(log)
    try:
        # The short job finishes; the long one is training (an epoch event has been stored)
        # in a child process below the worker.
        site.wait_for(lambda j: j[1][0] == "finished" and j[2][1].get("step") == "epoch")
        below = descendants(worker.pid)
        assert below, "the job runs in a child process"
    finally:
        worker.send_signal(signal.SIGKILL)  # no chance to clean up, like an OOM kill
        worker.wait(timeout=30)
    # The job's child dies with its worker: nothing goes on training (or beating) unseen.
    deadline = time.monotonic() + 10
    while alive(below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(below), f"orphans left running: {alive(below)}"
    assert site.jobs()[2][0] == "running"  # nobody said otherwise yet
    # Once the heartbeat is older than JOB_STALE_AFTER, the next worker fails it first thing.
    time.sleep(STALE_AFTER + 0.5)
    site.manage(*queue, "--diagnostics", "baseline", "--epochs", "2")
    worker = site.worker(log)
    try:
        site.wait_for(lambda j: j[3][0] == "finished")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        log.close()
    status, _, error = site.jobs()[2]
    assert status == "failed" and "stopped responding" in error
    assert site.jobs()[1][0] == "finished"
