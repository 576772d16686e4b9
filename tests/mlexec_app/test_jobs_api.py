"""Diagnostic jobs over the REST API: start, follow, cancel, plots; only for who sees the project."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from django.test import override_settings

from mlexec_app import jobs
from mlexec_app.conf import get_config
from mlexec_app.models import DiagnosticJob, RunStatus

pytest.importorskip("torch")
pytest.importorskip("django_tasks")

QUICK = {
    "train": {"epochs": 10, "min_steps": 60},
    "label_issues": {"folds": 3, "repeats": 1, "passes": 1},
    "label_train": {"epochs": 10, "min_steps": 60},
}


@pytest.fixture
def npz_images(tmp_path, project, settings):
    """Small 6x6 images: a horizontal bar (class h) or a vertical one (class v), as the file
    bars.npz in the project's data folder (what an API caller may name)."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    images = rng.normal(scale=0.2, size=(120, 6, 6))
    images[y == 0, 2:4, :] += 1.0
    images[y == 1, :, 2:4] += 1.0
    settings.MLEXEC_APP = {"DATA_ROOT": str(tmp_path)}
    (tmp_path / str(project.pk)).mkdir()
    np.savez(tmp_path / str(project.pk) / "bars.npz", X=images, y=y, classes=np.array(["h", "v"]))
    return "bars.npz"


def test_start_a_job_and_read_its_result_and_plots(api, project, npz_images):
    response = api.post(
        f"/projects/{project.slug}/diagnostic-jobs",
        {"dataset": npz_images, "diagnostics": ["label_issues", "learning_curve"], "params": QUICK},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == RunStatus.FINISHED and body["fraction_done"] == 1.0
    assert body["result"]["learning_curve"]["verdict"]
    listed = api.get(f"/projects/{project.slug}/diagnostic-jobs").json()["items"]
    assert [job["id"] for job in listed] == [body["id"]]
    assert "result" not in listed[0]
    curve = api.get(f"/diagnostic-jobs/{body['id']}/plots/learning-curve.svg")
    assert curve["Content-Type"] == "image/svg+xml"
    svg = ET.fromstring(curve.content)
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}circle")) == 2 * len(
        body["result"]["learning_curve"]["sizes"]
    )


def test_label_issue_plot_draws_each_suspect_as_an_image(api, project, npz_images, tmp_path):
    path = tmp_path / str(project.pk) / npz_images
    labels = np.load(path)
    y = labels["y"].copy()
    y[:3] = 1  # three horizontal bars now labelled "v"
    np.savez(path, X=labels["X"], y=y, classes=np.array(["h", "v"]))
    body = api.post(
        f"/projects/{project.slug}/diagnostic-jobs",
        {"dataset": npz_images, "diagnostics": ["label_issues"], "params": QUICK},
    ).json()
    issues = body["result"]["label_issues"]["issues"]
    assert {issue["index"] for issue in issues} >= {0, 1, 2}
    svg = api.get(f"/diagnostic-jobs/{body['id']}/plots/label-issues.svg").content.decode()
    root = ET.fromstring(svg)
    rects = root.findall(".//{http://www.w3.org/2000/svg}rect")
    assert len(rects) == 36 * len(issues)  # one square per pixel of each 6x6 image
    assert "v → h" in svg


def test_cancel_over_the_api(api, project):
    job = jobs.create_job(project, "digits")
    response = api.post(f"/diagnostic-jobs/{job.pk}/cancel")
    assert response.status_code == 200 and response.json()["status"] == RunStatus.CANCELLED
    again = api.post(f"/diagnostic-jobs/{job.pk}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "invalid_transition"


def test_bad_requests_get_coded_errors(api, project):
    response = api.post(
        f"/projects/{project.slug}/diagnostic-jobs", {"dataset": "digits", "diagnostics": ["x"]}
    )
    assert response.status_code == 422 and response.json()["code"] == "invalid_choice"
    assert not DiagnosticJob.objects.exists()
    missing_plot = api.get(f"/diagnostic-jobs/{jobs.create_job(project, 'digits').pk}/plots/x.svg")
    assert missing_plot.status_code == 404


def test_a_diagnostic_named_twice_is_refused_and_queues_nothing(api, project):
    """Each diagnostic runs once whatever the list says, but the list was stored as sent: a
    job naming one 100,000 times carried them all in every list of the project's jobs."""
    repeated = {"dataset": "digits", "diagnostics": ["baseline"] * 100_000}
    response = api.post(f"/projects/{project.slug}/diagnostic-jobs", repeated)
    assert (response.status_code, response.json()["code"]) == (422, "invalid_choice")
    twice = {"dataset": "digits", "diagnostics": ["baseline", "slices", "baseline"]}
    assert api.post(f"/projects/{project.slug}/diagnostic-jobs", twice).status_code == 422
    assert not DiagnosticJob.objects.exists()


def test_other_peoples_jobs_are_invisible(api, other_user, anonymous):
    from mlexec_app import services

    theirs = services.create_project(other_user, name="Secret")
    job = jobs.create_job(theirs, "digits")
    assert api.get(f"/diagnostic-jobs/{job.pk}").status_code == 404
    assert api.post(f"/diagnostic-jobs/{job.pk}/cancel").status_code == 404
    assert api.post("/projects/secret/diagnostic-jobs", {"dataset": "digits"}).status_code == 404
    assert anonymous.get(f"/diagnostic-jobs/{job.pk}").status_code == 401
    job.refresh_from_db()
    assert job.status == RunStatus.QUEUED


def test_an_api_key_reaches_the_jobs_of_its_projects(key_for, project):
    agent = key_for(project)
    job = jobs.create_job(project, "digits")
    assert agent.get(f"/diagnostic-jobs/{job.pk}").json()["dataset"] == "digits"


def test_a_user_has_at_most_max_open_jobs_queued_or_running(api, project, monkeypatch):
    """Each job may hold a worker for an hour; any user could queue as many as they liked."""
    monkeypatch.setattr(jobs, "_enqueuer", lambda pk: f"task-{pk}")  # they stay queued
    most = get_config()["MAX_OPEN_JOBS"]
    assert most == 10  # the default
    path = f"/projects/{project.slug}/diagnostic-jobs"
    started = [api.post(path, {"dataset": "digits"}) for _ in range(most)]
    assert [r.status_code for r in started] == [201] * most
    refused = api.post(path, {"dataset": "digits"})
    assert (refused.status_code, refused.json()["code"]) == (409, "too_many_jobs")
    assert DiagnosticJob.objects.count() == most
    api.post(f"/diagnostic-jobs/{started[0].json()['id']}/cancel")
    assert api.post(path, {"dataset": "digits"}).status_code == 201


@pytest.mark.parametrize(("most", "accepted"), [(2, 2), (0, 12)])
def test_the_open_jobs_limit_is_a_setting_and_0_lifts_it(api, project, monkeypatch, most, accepted):
    monkeypatch.setattr(jobs, "_enqueuer", lambda pk: f"task-{pk}")
    path = f"/projects/{project.slug}/diagnostic-jobs"
    with override_settings(MLEXEC_APP={"MAX_OPEN_JOBS": most}):
        codes = [api.post(path, {"dataset": "digits"}).status_code for _ in range(12)]
    assert codes.count(201) == accepted and DiagnosticJob.objects.count() == accepted
