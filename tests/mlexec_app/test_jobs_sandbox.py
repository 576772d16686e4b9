"""What a diagnostic job may touch: the allow-list, the data folder, and the child's limits.

Over the REST API a job names only registered datasets and model factories, or files in its
project's data folder; it runs in a child process, so a crash, a runaway or a memory hog fails
the job with the reason and the process that ran it (here: this test process, with the
immediate task backend) goes on to run the next job.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from mlexec_app.models import DiagnosticJob, RunStatus

# Its subject does not touch the engines: the first test pass runs it, the second does not.
pytestmark = pytest.mark.engine_independent

pytest.importorskip("torch")
pytest.importorskip("django_tasks")

HOSTILE = "tests.mlexec_app.hostile"
QUICK = {"train": {"epochs": 2, "min_steps": 20}}


def start(api, project, dataset, **body):
    return api.post(f"/projects/{project.slug}/diagnostic-jobs", {"dataset": dataset, **body})


def factory(name):
    return {**QUICK, "model": {"kind": "factory", "factory": name}}


@pytest.fixture
def data_root(tmp_path, project, settings):
    """DATA_ROOT with the project's folder holding data.csv; a secret.csv beside the root."""
    root = tmp_path / "root"
    folder = root / str(project.pk)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["a,b,label"] + [
        f"{rng.normal() + 3 * (i % 2):.3f},{rng.normal():.3f},{'yes' if i % 2 else 'no'}"
        for i in range(60)
    ]
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "secret.csv").write_text("password_hash,label\nx,1\ny,2\n")
    (folder / "escape.csv").symlink_to(tmp_path / "secret.csv")
    (folder / "inside.csv").symlink_to(folder / "data.csv")
    settings.MLEXEC_APP = {"DATA_ROOT": str(root)}
    return tmp_path


@pytest.mark.parametrize(
    "dataset",
    [
        "os.getpid",  # a dotted path: would import and call anything
        "tempfile.mkdtemp",
        "mlexec_app.diagnostics.data.load_demo",
        "{secret}",  # an absolute path to a file that exists
        "/etc/passwd",
        "../secret.csv",  # a parent directory
        "sub/../../secret.csv",
        "escape.csv",  # a symlink out of the data folder
        "missing.csv",  # a file that does not exist answers the same
        "..\\secret.csv",
        "demo:digits",
    ],
)
def test_the_api_refuses_datasets_outside_the_allow_list(api, project, data_root, dataset):
    dataset = dataset.format(secret=data_root / "secret.csv")
    response = start(api, project, dataset, diagnostics=["baseline"], params=QUICK)
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "dataset_not_allowed"
    assert "password_hash" not in body["message"]
    # One answer whether the file exists, is forbidden or is missing: only the name differs
    # (shortened when long, as a temporary folder's path can be).
    named = re.fullmatch(
        r"Unknown dataset '(.*)': name a registered dataset \(digits\) or a \.csv/\.npz file in "
        r"the project's data folder\.",
        body["message"],
    )
    assert named, body["message"]
    assert repr(dataset)[1:-1].startswith(named[1].removesuffix("..."))
    assert not DiagnosticJob.objects.exists()  # nothing queued, so nothing ran


def test_without_a_data_root_no_file_is_allowed(api, project, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,label\n1,x\n2,y\n")
    response = start(api, project, str(path))
    assert response.status_code == 422 and response.json()["code"] == "dataset_not_allowed"
    assert "data folder" not in response.json()["message"]
    assert not DiagnosticJob.objects.exists()


def test_a_file_in_the_project_data_folder_runs(api, project, data_root):
    for name in ("data.csv", "inside.csv"):  # a symlink that stays inside is fine
        response = start(api, project, name, diagnostics=["baseline"], params=QUICK)
        assert response.status_code == 201, response.content
        assert response.json()["status"] == RunStatus.FINISHED, response.json()["error"]
    assert DiagnosticJob.objects.filter(status=RunStatus.FINISHED).count() == 2


def test_another_projects_data_folder_is_out_of_reach(api, project, data_root, user):
    from mlexec_app import services

    other = services.create_project(user, name="Other")
    response = start(api, other, f"../{project.pk}/data.csv")
    assert response.status_code == 422
    response = start(api, other, "data.csv")
    assert response.status_code == 422 and response.json()["code"] == "dataset_not_allowed"


def test_the_api_refuses_an_unregistered_factory(api, project, settings):
    settings.MLEXEC_APP = {"JOB_MODEL_FACTORIES": {"tiny": f"{HOSTILE}.tiny"}}
    for params in (
        factory(f"{HOSTILE}.tiny"),  # the dotted path itself, not its registered name
        factory("os.getpid"),
        {**QUICK, "label_model": {"kind": "factory", "factory": "tempfile.mkdtemp"}},
    ):
        response = start(api, project, "digits", diagnostics=["baseline"], params=params)
        assert response.status_code == 422, response.content
        assert response.json()["code"] == "factory_not_allowed"
    assert not DiagnosticJob.objects.exists()
    response = start(api, project, "digits", diagnostics=["baseline"], params=factory("tiny"))
    assert response.status_code == 201 and response.json()["status"] == RunStatus.FINISHED


def test_registered_datasets_are_the_site_owners_choice(api, project, data_root, settings):
    settings.MLEXEC_APP = {"JOB_DATASETS": {"pets": str(data_root / "secret.csv")}}
    assert start(api, project, "digits").status_code == 422  # no longer registered
    response = start(api, project, "pets", diagnostics=["baseline"], params=QUICK)
    assert response.status_code == 201  # registered: queued and run (the file is too small)
    assert response.json()["status"] == RunStatus.FAILED
    assert "two examples per class" in response.json()["error"]


def test_a_job_that_segfaults_fails_with_the_reason_and_the_worker_goes_on(api, project, settings):
    settings.MLEXEC_APP = {
        "JOB_MODEL_FACTORIES": {"crash": f"{HOSTILE}.segfault", "tiny": f"{HOSTILE}.tiny"}
    }
    crashed = start(api, project, "digits", diagnostics=["baseline"], params=factory("crash"))
    assert crashed.status_code == 201
    body = crashed.json()
    assert body["status"] == RunStatus.FAILED
    assert body["error"] == "crashed with signal 11 (SIGSEGV)."
    assert body["finished_at"] is not None
    # Same process, next job: it runs and finishes.
    after = start(api, project, "digits", diagnostics=["baseline"], params=factory("tiny"))
    assert after.json()["status"] == RunStatus.FINISHED, after.json()["error"]


def test_a_runaway_job_is_stopped_at_the_time_limit(api, project, settings):
    settings.MLEXEC_APP = {
        "JOB_MODEL_FACTORIES": {"loop": f"{HOSTILE}.endless"},
        "JOB_TIME_LIMIT": 2,
    }
    began = time.monotonic()
    body = start(api, project, "digits", diagnostics=["baseline"], params=factory("loop")).json()
    assert time.monotonic() - began < 10
    assert body["status"] == RunStatus.FAILED
    assert body["error"].startswith("time limit: stopped after 2 s")


def test_a_memory_hog_is_stopped_at_the_memory_limit(api, project, settings):
    settings.MLEXEC_APP = {
        "JOB_MODEL_FACTORIES": {"hog": f"{HOSTILE}.greedy"},
        "JOB_MEMORY_LIMIT_MB": 3000,
    }
    body = start(api, project, "digits", diagnostics=["baseline"], params=factory("hog")).json()
    assert body["status"] == RunStatus.FAILED
    assert body["error"].startswith("memory limit: the job needed more than 3000 MiB")
