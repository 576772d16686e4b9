"""Diagnostic jobs through Django: run inline, record progress, cancel, fail when stale."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.utils import timezone

from mlexec_app import job_runner, jobs, services
from mlexec_app.exceptions import InvalidInput, InvalidTransition
from mlexec_app.models import DataAssessment, DiagnosticJob, ErrorAnalysis, Run, RunStatus

pytest.importorskip("torch")
pytest.importorskip("django_tasks")

FAST = {
    "train": {"epochs": 10, "min_steps": 60},
    "label_issues": {"folds": 4, "repeats": 1},
    "label_train": {"epochs": 10, "min_steps": 60},
}
PUBLISHED: list[tuple[int, dict]] = []
CANCEL_AFTER = {"events": None}


def record_event(job, event):
    """A PROGRESS_PUBLISHER for the tests; asks to cancel after CANCEL_AFTER events."""
    PUBLISHED.append((job.pk, event))
    limit = CANCEL_AFTER["events"]
    return limit is not None and len(PUBLISHED) >= limit


@pytest.fixture(autouse=True)
def _reset_hooks():
    PUBLISHED.clear()
    CANCEL_AFTER["events"] = None


@pytest.fixture
def csv_dataset(tmp_path):
    """Three classes at two sites; 24 labels flipped; site B's classes overlap."""
    rng = np.random.default_rng(0)
    n = 480
    y = np.repeat([0, 1, 2], n // 3)
    centres = np.array([[0, 0, 0, 0], [5, 5, 0, 0], [0, 5, 5, 0]])
    site = np.where(rng.random(n) < 0.5, "A", "B")
    X = centres[y] + rng.normal(scale=np.where(site == "B", 2.5, 0.6)[:, None], size=(n, 4))
    flipped = rng.choice(n, 24, replace=False)
    labels = y.copy()
    labels[flipped] = (labels[flipped] + 1) % 3
    names = np.array(["cat", "dog", "fox"])
    path = tmp_path / "pets.csv"
    lines = ["f1,f2,f3,f4,site,label"]
    lines += [",".join([*(f"{v:.4f}" for v in X[i]), site[i], names[labels[i]]]) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return str(path), set(flipped.tolist())


def test_a_job_runs_inline_and_feeds_the_diagnosis(project, csv_dataset, user):
    path, flipped = csv_dataset
    job = jobs.start_job(
        project, path, params={**FAST, "slice_column": "site"}, user=user, trusted=True
    )
    job.refresh_from_db()
    assert job.status == RunStatus.FINISHED, job.error
    assert job.task_id and job.fraction_done == 1.0 and job.created_by == user
    found = {issue["index"] for issue in job.result["label_issues"]["issues"]}
    assert len(found & flipped) >= 20
    # The baseline run is in the ledger, in the project's metric (error here).
    run = Run.objects.get(pk=job.run_id)
    assert run.source == "diagnostics" and run.status == RunStatus.FINISHED
    assert services.diagnosed_run(project) == run  # the diagnosis now reads this run
    assert run.dev == job.result["baseline"]["errors"]["dev"]
    assert run.points.filter(key="learning_curve.dev_error").count() == len(
        job.result["learning_curve"]["sizes"]
    )
    # Dev errors sliced by site, with the suspected label errors as their own category.
    analysis = ErrorAnalysis.objects.get(project=project, source="diagnostics")
    assert analysis.run == run
    assert set(analysis.categories) <= {"A", "B", "suspected label error"}
    assert analysis.sample_size == job.result["slices"]["total_errors"]
    # Label quality goes into the data assessment the diagnosis reads.
    assessment = DataAssessment.objects.get(project=project)
    assert assessment.label_quality == pytest.approx(1 - len(found) / 480, abs=0.01)
    by_site = {s["name"]: s for s in job.result["slices"]["slices"]}
    assert by_site["B"]["error_rate"] > by_site["A"]["error_rate"]  # B's classes overlap
    assert assessment.train_size == job.result["baseline"]["sizes"]["train"]


def test_accuracy_projects_get_accuracy_not_error(project, csv_dataset):
    project.metric_direction = "higher"
    project.target_value = 0.98
    project.save()
    job = jobs.start_job(
        project, csv_dataset[0], diagnostics=["baseline"], params=FAST, trusted=True
    )
    job.refresh_from_db()
    run = Run.objects.get(pk=job.run_id)
    assert run.dev == pytest.approx(1 - job.result["baseline"]["errors"]["dev"])
    assert jobs.target_error(project) == pytest.approx(0.02)


def test_progress_is_stored_and_published(project, csv_dataset, settings):
    settings.MLEXEC_APP = {"PROGRESS_PUBLISHER": f"{__name__}.record_event"}
    job = jobs.start_job(
        project, csv_dataset[0], diagnostics=["learning_curve"], params=FAST, trusted=True
    )
    types = [event["type"] for _, event in PUBLISHED]
    assert types[0] == "started" and types[-1] == "finished"
    progress = [event for _, event in PUBLISHED if event["type"] == "progress"]
    assert any(e["step"] == "sizes" for e in progress)
    fractions = [e["fraction"] for e in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(pk == job.pk for pk, _ in PUBLISHED)
    job.refresh_from_db()
    assert job.heartbeat_at is not None and job.progress["step"] == "finished"


def test_a_publisher_can_cancel_the_job(project, csv_dataset, settings):
    # What the sessions bridge does when a user cancels from the durable session.
    settings.MLEXEC_APP = {"PROGRESS_PUBLISHER": f"{__name__}.record_event"}
    CANCEL_AFTER["events"] = 3
    job = jobs.start_job(project, csv_dataset[0], params=FAST, trusted=True)
    job.refresh_from_db()
    assert job.status == RunStatus.CANCELLED
    assert PUBLISHED[-1][1]["type"] == "cancelled"
    assert not Run.objects.filter(project=project).exists()


def cancel_everything(job):
    return True


def test_a_cancel_checker_hook_stops_the_job(project, csv_dataset, settings):
    settings.MLEXEC_APP = {"CANCEL_CHECKER": f"{__name__}.cancel_everything"}
    job = jobs.start_job(project, csv_dataset[0], params=FAST, trusted=True)
    job.refresh_from_db()
    assert job.status == RunStatus.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_running_job_within_seconds(project, csv_dataset):
    # A long learning curve running in a worker thread; the cancel comes from "another process".
    params = {"train": {"epochs": 2000}}
    job = jobs.create_job(
        project, csv_dataset[0], diagnostics=["learning_curve"], params=params, trusted=True
    )

    def work() -> None:
        try:
            job_runner.execute(job.pk)
        finally:
            connection.close()  # a thread's connection would keep the test database busy

    worker = threading.Thread(target=work)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.status == RunStatus.RUNNING and job.progress.get("step") == "epoch":
                break
            time.sleep(0.05)
        assert job.status == RunStatus.RUNNING
        cancelled_at = time.monotonic()
        assert jobs.request_cancel(job).status == RunStatus.CANCELLING
        worker.join(timeout=10)
        assert not worker.is_alive()
        assert time.monotonic() - cancelled_at < 3.0
    finally:
        DiagnosticJob.objects.filter(pk=job.pk).update(cancel_requested=True)
        worker.join(timeout=30)
    job.refresh_from_db()
    assert job.status == RunStatus.CANCELLED and job.finished_at is not None


def test_cancelling_a_queued_job_is_immediate_and_the_worker_skips_it(project):
    job = jobs.create_job(project, "digits")
    assert jobs.request_cancel(job).status == RunStatus.CANCELLED
    assert job_runner.execute(job.pk) == {"job": job.pk, "status": "skipped"}
    with pytest.raises(InvalidTransition):
        jobs.request_cancel(job)


def test_a_killed_workers_job_is_failed_not_left_running(project):
    stale = jobs.create_job(project, "digits")
    alive = jobs.create_job(project, "digits")
    long_ago = timezone.now() - timedelta(minutes=10)
    DiagnosticJob.objects.filter(pk=stale.pk).update(
        status=RunStatus.RUNNING, started_at=long_ago, heartbeat_at=long_ago
    )
    DiagnosticJob.objects.filter(pk=alive.pk).update(
        status=RunStatus.RUNNING, started_at=long_ago, heartbeat_at=timezone.now()
    )
    listed = {j.pk: j for j in jobs.jobs_for(type(project).objects.all())}  # listing reaps
    assert listed[stale.pk].status == RunStatus.FAILED
    assert "no heartbeat" in listed[stale.pk].error
    assert listed[alive.pk].status == RunStatus.RUNNING


def test_a_broken_dataset_fails_the_job_with_the_reason(project, tmp_path):
    job = jobs.start_job(project, str(tmp_path / "missing.csv"), trusted=True)
    job.refresh_from_db()
    assert job.status == RunStatus.FAILED
    assert "missing.csv" in job.error and job.finished_at is not None


def test_a_site_without_a_job_queue_is_told_how_to_get_one(project):
    removed = jobs.set_enqueuer(None)
    try:
        with pytest.raises(ImproperlyConfigured, match="django-tasks"):
            jobs.start_job(project, "digits", diagnostics=["baseline"], params=FAST)
    finally:
        jobs.set_enqueuer(removed)
    assert DiagnosticJob.objects.get().task_id == ""  # left queued, never marked handed over


def test_unknown_diagnostics_are_refused_before_queueing(project):
    with pytest.raises(InvalidInput, match="astrology"):
        jobs.create_job(project, "digits", diagnostics=["astrology"])
    assert not DiagnosticJob.objects.exists()


def test_the_job_choices_match_the_pipeline():
    from mlexec_app.diagnostics.pipeline import ALL

    # Every pipeline diagnostic, and the search, which runs as a job of its own.
    assert jobs.DIAGNOSTIC_CHOICES == (*ALL, "search")


def test_a_failure_while_recording_results_fails_the_job_and_writes_nothing(
    project, csv_dataset, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "record_assessment", broken)  # after the Run is written
    job = jobs.start_job(project, csv_dataset[0], params=FAST, trusted=True)
    job.refresh_from_db()
    assert job.status == RunStatus.FAILED and "database went away" in job.error
    assert not Run.objects.exists() and not ErrorAnalysis.objects.exists()  # all or nothing
    assert job.result == {}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"train": {"epoch": 3}}, "epoch"),
        ({"model": {"kind": "transformer"}}, "Unknown model kind 'transformer'"),
        ({"learning_rate": 0.1}, "unknown parameters ['learning_rate']"),
    ],
)
def test_bad_parameters_are_refused_before_queueing(project, params, message):
    with pytest.raises(InvalidInput, match=re.escape(message)) as info:
        jobs.create_job(project, "digits", params=params)
    assert info.value.code == "invalid_params"
    assert not DiagnosticJob.objects.exists()
