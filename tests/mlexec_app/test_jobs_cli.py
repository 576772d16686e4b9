"""``manage.py mlexec run-diagnostics`` and ``reap-jobs``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from mlexec_app import jobs
from mlexec_app.models import DiagnosticJob, Run, RunStatus

pytest.importorskip("torch")
pytest.importorskip("django_tasks")


def mlexec(*args):
    out, err = StringIO(), StringIO()
    call_command("mlexec", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def csv_path(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    X = rng.normal(size=(200, 3)) + y[:, None] * 3.0
    path = tmp_path / "two.csv"
    rows = ["a,b,c,label"] + [
        f"{x[0]:.3f},{x[1]:.3f},{x[2]:.3f},{t}" for x, t in zip(X, y, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_run_diagnostics_prints_findings_and_a_progress_bar(project, csv_path):
    out, err = mlexec(
        "run-diagnostics", project.slug, "--dataset", csv_path,
        "--diagnostics", "learning_curve,baseline", "--epochs", "10",
    )  # fmt: skip
    job = DiagnosticJob.objects.get()
    assert job.status == RunStatus.FINISHED
    assert f"Diagnostic job {job.pk}" in out
    assert "Learning curve: " in out and "Baseline error: train" in out
    assert f"run {job.run_id}" in out and Run.objects.filter(pk=job.run_id).exists()
    assert "[" + "#" * 30 + "] 100%" in err  # the bar reached the end
    assert "learning_curve" in err


def test_run_diagnostics_queue_hands_the_job_to_the_task_backend(project, csv_path):
    out, _ = mlexec(
        "run-diagnostics", project.slug, "--dataset", csv_path, "--diagnostics", "baseline",
        "--epochs", "5", "--queue",
    )  # fmt: skip
    job = DiagnosticJob.objects.get()
    assert out.startswith(f"Job {job.pk} {job.status}")  # ImmediateBackend: already done
    assert job.task_id


def test_run_diagnostics_reports_a_failure_clearly(project, tmp_path):
    with pytest.raises(CommandError, match="failed.*nope.csv"):
        mlexec("run-diagnostics", project.slug, "--dataset", str(tmp_path / "nope.csv"))
    with pytest.raises(CommandError, match="No project"):
        mlexec("run-diagnostics", "no-such-project")


def test_reap_jobs_fails_stale_running_jobs(project):
    job = jobs.create_job(project, "digits")
    long_ago = timezone.now() - timedelta(minutes=5)
    DiagnosticJob.objects.filter(pk=job.pk).update(
        status=RunStatus.RUNNING, started_at=long_ago, heartbeat_at=long_ago
    )
    out, _ = mlexec("reap-jobs", "--stale-after", "60")
    assert out.strip() == "Failed 1 stale diagnostic job(s)."
    job.refresh_from_db()
    assert job.status == RunStatus.FAILED


@pytest.mark.slow
@pytest.mark.engine_independent  # training; the job rows it writes are tested on both engines
@pytest.mark.timeout(300)  # about 10 s on an idle 2-core machine, far more when it is busy
def test_the_full_diagnosis_of_digits_from_the_cli(project, tmp_path):
    out, _ = mlexec(
        "run-diagnostics", project.slug, "--dataset", "digits", "--plots", str(tmp_path)
    )
    assert "Label issues: " in out and "Worst slice by class" in out
    job = DiagnosticJob.objects.get()
    assert job.result["label_issues"]["noise_rate"] < 0.02  # the bundled digits are clean
    assert set(job.result["timings"]) == {"label_issues", "learning_curve", "baseline", "slices"}
    for name in ("learning-curve.svg", "label-issues.svg"):
        ET.parse(tmp_path / name)  # well-formed SVG
