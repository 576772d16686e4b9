"""`make run`'s demo_setup: the demo login and the demo ML project, made once however often
it runs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.apps import apps
from django.core.management import call_command
from django.test import Client

from mlexec_app.diagnostics.data import load_dataset
from mlexec_app.models import DiagnosticJob, Project, Run

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not apps.is_installed("config"), reason="demo_setup is the demo site's"),
]


@pytest.fixture
def queued_jobs(settings, tmp_path):
    # As under `make run`: jobs wait in the queue for a worker (here none comes).
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    settings.MLEXEC_APP = {**settings.MLEXEC_APP, "DATA_ROOT": str(tmp_path)}
    return tmp_path


def test_demo_setup_twice_makes_the_project_run_and_queued_job_once(queued_jobs):
    out = io.StringIO()
    call_command("demo_setup", stdout=out)
    call_command("demo_setup", stdout=out)
    project = Project.objects.get()
    assert project.slug == "digits-demo" and project.owner.username == "demo"
    run = Run.objects.get()
    assert run.external_id == "demo:baseline" and 0.8 < run.dev < 1.0
    job = DiagnosticJob.objects.get()
    assert job.status == "queued" and job.dataset == "digits-noisy.npz" and not job.trusted
    assert "label_issues" in job.diagnostics and "learning_curve" in job.diagnostics
    assert out.getvalue().count("/mlexec/projects/digits-demo/") == 2

    # The file the job will load is in the project's data folder: the digits, 180 labels off.
    data = load_dataset(str(queued_jobs / str(project.pk) / "digits-noisy.npz"))
    clean = load_dataset("digits")
    assert data.image_shape == (1, 8, 8) and np.array_equal(data.X, clean.X)
    assert int((data.y != clean.y).sum()) == 180

    client = Client()
    client.force_login(project.owner)
    page = client.get("/mlexec/projects/digits-demo/").content.decode()
    assert f"Job #{job.pk}" in page and "waiting for the job worker" in page
    assert '<meta http-equiv="refresh"' in page  # the page follows the job by itself
