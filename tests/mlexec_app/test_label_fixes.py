"""Label review: NPZ export, the script's JSON answers, and accepted fixes recorded as the
fix-labels step with its realised gain measured by a rerun on the corrected labels."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.test import Client

from mlexec_app import jobs, label_review
from mlexec_app.exceptions import InvalidInput, InvalidTransition
from mlexec_app.models import DiagnosticJob, Intervention, LabelDecision

pytestmark = pytest.mark.django_db

FAST = {"train": {"epochs": 10, "min_steps": 60}}
NAMES = np.array(["cat", "dog", "fox"])


@pytest.fixture
def noisy_csv(tmp_path):
    """Three well separated classes; 24 labels flipped to the next class."""
    rng = np.random.default_rng(0)
    n = 300
    y = np.repeat([0, 1, 2], n // 3)
    X = np.array([[0, 0], [6, 0], [0, 6]])[y] + rng.normal(scale=0.7, size=(n, 2))
    flipped = rng.choice(n, 24, replace=False)
    labels = y.copy()
    labels[flipped] = (labels[flipped] + 1) % 3
    path = tmp_path / "pets.csv"
    lines = ["a,b,label"] + [f"{X[i, 0]:.4f},{X[i, 1]:.4f},{NAMES[labels[i]]}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return str(path), {int(i): str(NAMES[y[i]]) for i in flipped}, labels


@pytest.fixture
def reviewed(project, user, noisy_csv):
    """A finished job (as a worker leaves it) whose suspected labels are the flipped rows."""
    path, truth, labels = noisy_csv
    issues = [
        {"index": i, "given": str(NAMES[labels[i]]), "suggested": right,
         "given_probability": 0.1, "suggested_probability": 0.8}
        for i, right in truth.items()
    ]  # fmt: skip
    job = DiagnosticJob.objects.create(
        project=project,
        dataset=path,
        trusted=True,
        diagnostics=["baseline"],
        params=FAST,
        status="finished",
        result={
            "label_issues": {"issues": issues},
            "baseline": {"errors": {"dev": 0.12}},
            "dataset": {"class_balance": {"cat": 92, "dog": 104, "fox": 104}},
        },
    )
    return job, truth


def test_fixes_recorded_as_the_fix_labels_step_and_measured_by_a_rerun(reviewed, user):
    job, truth = reviewed
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    base = f"/mlexec/projects/{job.project.slug}/jobs/{job.pk}/labels/"
    client.get(base)
    token = client.cookies["csrftoken"].value
    refused = client.post(f"{base}fix/", {"csrfmiddlewaretoken": token}, follow=True)
    assert "Accept at least one suggested label first." in refused.content.decode()
    assert not DiagnosticJob.objects.exclude(pk=job.pk).exists()  # nothing accepted: no rerun
    assert not Intervention.objects.exists()

    for index in truth:
        answer = client.post(
            f"{base}{index}/",
            {"verdict": "accept", "csrfmiddlewaretoken": token},
            HTTP_ACCEPT="application/json",
        )
        assert json.loads(answer.content)["verdict"] == "accept"
    assert json.loads(answer.content)["summary"] == "24 of 24 decided, 24 accepted."

    answer = client.post(f"{base}fix/", {"csrfmiddlewaretoken": token})
    assert answer.status_code == 303 and answer["Location"].endswith("#fixes")
    rerun = DiagnosticJob.objects.exclude(pk=job.pk).get()
    assert rerun.status == "finished", rerun.error
    assert rerun.trusted and rerun.dataset == job.dataset
    # The rerun loaded the same file with the accepted labels: the classes are balanced again.
    assert rerun.result["dataset"]["class_balance"] == {"cat": 100, "dog": 100, "fox": 100}
    step = Intervention.objects.get(rule_id="plan.data_quality.fix_labels")
    after = rerun.result["baseline"]["errors"]["dev"]
    assert step.status == "done" and step.realized_gain == pytest.approx(0.12 - after)
    assert rerun.result["fix_labels"]["fixed"] == 24
    page = client.get(base).content.decode()
    assert f"Rerun job #{rerun.pk} started: Finished." in page  # the message, once
    assert f"Rerun job #{rerun.pk}: Finished" in page and "realised gain" in page


def test_a_second_rerun_waits_for_the_first_and_foreign_fixes_are_refused(reviewed, user):
    job, truth = reviewed
    index = next(iter(truth))
    label_review.decide(job, index, "accept", user)
    DiagnosticJob.objects.create(
        project=job.project, dataset=job.dataset, params={"fix_labels": {"from_job": job.pk}}
    )  # queued, not yet run
    with pytest.raises(InvalidTransition):
        label_review.record_fixes(job, user)
    for bad in (
        {"fix_labels": {"labels": [[-1, "cat"]]}},
        {"fix_labels": {"labels": "cat"}},
        {"fix_labels": {"path": "/etc/passwd"}},
        {"fix_labels": {"intervention": "1"}},
    ):
        with pytest.raises(InvalidInput):
            jobs.create_job(job.project, "digits", params=bad)


def test_npz_export_holds_the_accepted_fixes_without_pickles(reviewed, user):
    job, truth = reviewed
    rows = sorted(truth)[:3]
    for index in rows:
        label_review.decide(job, index, "accept", user)
    label_review.decide(job, sorted(truth)[3], "reject", user)
    client = Client()
    client.force_login(user)
    answer = client.get(f"/mlexec/projects/{job.project.slug}/jobs/{job.pk}/labels.npz")
    assert answer["Content-Type"] == "application/octet-stream"
    assert answer["Content-Disposition"].startswith("attachment;")
    with np.load(io.BytesIO(answer.content), allow_pickle=False) as archive:
        assert archive["index"].tolist() == rows
        assert archive["corrected"].tolist() == [truth[i] for i in rows]
    assert LabelDecision.objects.filter(verdict="accept").count() == 3


def test_images_are_drawn_in_the_shape_the_pipeline_stores(project, user):
    # A diagnostic job stores (channels, rows, columns): [1, 8, 8] for the digits.
    issue = {"index": 3, "given": "1", "suggested": "7", "image": [0.5] * 64}
    job = DiagnosticJob.objects.create(
        project=project, dataset="digits", status="finished",
        result={"label_issues": {"issues": [issue], "image_shape": [1, 8, 8]}},
    )  # fmt: skip
    client = Client()
    client.force_login(user)
    page = client.get(f"/mlexec/projects/{project.slug}/jobs/{job.pk}/labels/").content.decode()
    assert page.count("<rect") == 64
