"""Diagnostic jobs in the admin: start from the add form, see the plots, cancel, reap."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from mlexec_app import jobs
from mlexec_app.models import DiagnosticJob, RunStatus

pytest.importorskip("torch")
pytest.importorskip("django_tasks")

QUICK = {
    "train": {"epochs": 10, "min_steps": 60},
    "label_issues": {"folds": 3, "repeats": 1, "passes": 1},
    "label_train": {"epochs": 10, "min_steps": 60},
}


@pytest.fixture
def admin_client(project):
    get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.login(username="root", password="pw")
    return client


@pytest.fixture
def images(tmp_path, project, settings):
    """bars.npz in the project's data folder: the admin form follows the API's rules."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    X = rng.normal(scale=0.2, size=(80, 5, 5))
    X[y == 0, 2, :] += 1.0
    X[y == 1, :, 2] += 1.0
    y[0] = 1  # one horizontal bar labelled "vertical"
    settings.MLEXEC_APP = {"DATA_ROOT": str(tmp_path)}
    (tmp_path / str(project.pk)).mkdir()
    path = tmp_path / str(project.pk) / "bars.npz"
    np.savez(path, X=X, y=y, classes=np.array(["horizontal", "vertical"]))
    return "bars.npz"


def test_the_add_form_starts_a_job_and_the_page_shows_its_plots(admin_client, project, images):
    response = admin_client.post(
        "/admin/mlexec_app/diagnosticjob/add/",
        {
            "project": project.pk,
            "dataset": images,
            "diagnostics": ["label_issues", "learning_curve"],
            "params": json.dumps(QUICK),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    job = DiagnosticJob.objects.get()
    assert job.status == RunStatus.FINISHED, job.error
    page = admin_client.get(f"/admin/mlexec_app/diagnosticjob/{job.pk}/change/").content.decode()
    assert page.count('class="mlexec-chart"') == 2  # learning curve, suspected label errors
    assert "horizontal → vertical" not in page  # captions read given → likely
    assert "vertical → horizontal" in page
    assert "Learning curve:" in page


def test_the_cancel_action_and_the_list_fail_stale_jobs(admin_client, project):
    queued = jobs.create_job(project, "digits")
    stale = jobs.create_job(project, "digits")
    long_ago = timezone.now() - timedelta(hours=1)
    DiagnosticJob.objects.filter(pk=stale.pk).update(
        status=RunStatus.RUNNING, started_at=long_ago, heartbeat_at=long_ago
    )
    page = admin_client.get("/admin/mlexec_app/diagnosticjob/")
    assert page.status_code == 200
    stale.refresh_from_db()
    assert stale.status == RunStatus.FAILED
    admin_client.post(
        "/admin/mlexec_app/diagnosticjob/",
        {"action": "cancel_jobs", "_selected_action": [queued.pk, stale.pk]},
    )
    queued.refresh_from_db()
    assert queued.status == RunStatus.CANCELLED


def test_the_add_form_refuses_a_path_outside_the_data_folder(admin_client, project, images):
    response = admin_client.post(
        "/admin/mlexec_app/diagnosticjob/add/",
        {"project": project.pk, "dataset": "/etc/passwd", "diagnostics": ["baseline"],
         "params": "{}"},
    )  # fmt: skip
    assert response.status_code == 200  # the form again, with the error
    assert "Unknown dataset" in response.content.decode()
    assert not DiagnosticJob.objects.exists()
