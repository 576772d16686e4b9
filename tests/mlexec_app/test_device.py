"""MLEXEC_APP["DEVICE"]: honoured by the diagnostics, recorded on the run, CPU results unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.checks import run_checks

from mlexec_app import job_runner, jobs
from mlexec_app.models import RunStatus

# Its subject does not touch the engines: the first test pass runs it, the second does not.
pytestmark = pytest.mark.engine_independent

torch = pytest.importorskip("torch")
pytest.importorskip("django_tasks")

FAST = {"model": {"kind": "mlp", "hidden": [16]}, "train": {"epochs": 4, "min_steps": 20}}


def _blobs(n: int = 120):
    from mlexec_app.diagnostics.data import Dataset

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], n // 3)
    X = (np.eye(3, 5)[y] * 3 + rng.normal(size=(n, 5))).astype(np.float32)
    return Dataset(X, y.astype(np.int64), ["a", "b", "c"])


def _probabilities(device: str) -> np.ndarray:
    from mlexec_app.diagnostics.networks import ModelSpec
    from mlexec_app.diagnostics.runtime import use_device
    from mlexec_app.diagnostics.training import TrainConfig, fit_predict

    data = _blobs()
    masks = np.zeros((2, len(data.y)), bool)
    masks[0, ::2] = masks[1, 1::2] = True
    use_device(device)
    try:
        return fit_predict(
            data.X, data.y, masks, 3, ModelSpec(hidden=(16,)), TrainConfig(epochs=3, min_steps=9)
        )
    finally:
        use_device("cpu")


def test_auto_is_the_cpu_here_and_gives_the_same_numbers_as_the_cpu():
    from mlexec_app.diagnostics.runtime import use_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert use_device("auto") == expected
    use_device("cpu")
    if expected == "cpu":
        assert np.array_equal(_probabilities("auto"), _probabilities("cpu"))


def test_an_unusable_device_is_refused_with_its_name():
    from mlexec_app.diagnostics.runtime import use_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="cuda:0"):
        use_device("cuda:0")
    with pytest.raises(ValueError, match="toaster"):
        use_device("toaster")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_training_matches_the_cpu_closely():
    gpu, cpu = _probabilities("cuda"), _probabilities("cpu")
    assert np.abs(gpu - cpu).max() < 1e-3


@pytest.mark.django_db
def test_the_device_used_is_recorded_on_the_job_and_its_run(project, settings):
    settings.MLEXEC_APP = {"DEVICE": "cpu"}
    job = jobs.start_job(project, "digits", diagnostics=["baseline"], params=FAST, trusted=True)
    job.refresh_from_db()
    assert job.status == RunStatus.FINISHED, job.error
    assert job.result["device"] == "cpu"
    assert job.run.params["device"] == "cpu"


@pytest.mark.django_db
def test_a_device_the_worker_lacks_fails_the_job_with_the_reason(project, settings):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    settings.MLEXEC_APP = {"DEVICE": "cuda:0"}
    job = jobs.create_job(project, "digits", diagnostics=["baseline"], params=FAST,
                          trusted=True)  # fmt: skip
    with pytest.raises(Exception, match="no CUDA GPU"):
        job_runner.execute(job.pk)
    job.refresh_from_db()
    assert job.status == RunStatus.FAILED and "no CUDA GPU" in job.error


@pytest.mark.parametrize(
    ("value", "ok"), [("auto", True), ("cuda:1", True), ("mps", True), ("gpu", False), (0, False)]
)
def test_the_device_setting_is_checked_at_start_up(settings, value, ok):
    settings.MLEXEC_APP = {"DEVICE": value}
    ids = [e.id for e in run_checks() if e.id.startswith("mlexec_app")]
    assert ("mlexec_app.E008" not in ids) == ok
