"""``manage.py mlexec import-mlflow`` against stores that MLflow itself wrote."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from mlexec_app import services
from mlexec_app.models import Run

mlflow_tracking = pytest.importorskip("mlflow.tracking")
pytestmark = pytest.mark.django_db


def mlexec(*args):
    out = StringIO()
    call_command("mlexec", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def digits(user):
    project = services.create_project(
        user, name="Digits", metric_name="accuracy", metric_direction="higher", human_level=0.99
    )
    services.record_assessment(project, train_size=1000, train_dev_size=300, dev_size=300)
    return project


def make_store(uri, tmp_path):
    """An experiment with a finished and a failed run, logged with MLflow's client."""
    client = mlflow_tracking.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("digits-mlp", artifact_location=str(tmp_path / "art"))
    good = client.create_run(experiment, run_name="mlp-64")
    run_id = good.info.run_id
    client.log_param(run_id, "lr", "0.01")
    client.log_param(run_id, "optimizer", "adam")
    for step, (train, val) in enumerate([(0.80, 0.78), (0.93, 0.88), (0.99, 0.90)]):
        client.log_metric(run_id, "train_acc", train, step=step)
        client.log_metric(run_id, "val_acc", val, step=step)
        client.log_metric(run_id, "loss", 2.0 / (step + 1), step=step)
    client.log_metric(run_id, "grad_norm", float("nan"), step=0)
    client.set_tag(run_id, "mlflow.note.content", "first <b>try</b>")
    client.set_terminated(run_id)
    bad = client.create_run(experiment, run_name="mlp-diverged")
    client.log_metric(bad.info.run_id, "val_acc", 0.1, step=0)
    client.set_terminated(bad.info.run_id, status="FAILED")
    return client, run_id


def test_an_mlflow_sqlite_experiment_is_imported_then_diagnosed(digits, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, run_id = make_store(uri, tmp_path)
    args = (
        "import-mlflow",
        "digits",
        "--tracking-uri",
        uri,
        "--experiment",
        "digits-mlp",
        "--map",
        "train=train_acc",
        "--map",
        "dev=val_acc",
    )
    assert "2 new, 0 updated" in mlexec(*args)

    good = Run.objects.get(name="mlp-64")
    assert good.status == "finished" and good.source == "mlflow"
    assert good.external_id == f"mlflow:{run_id}"
    assert good.params == {"lr": 0.01, "optimizer": "adam"}
    assert good.train == 0.99 and good.dev == 0.90 and good.metrics["val_acc"] == 0.90
    assert [p.value for p in services.metric_history(good, "dev")] == [0.78, 0.88, 0.90]
    assert services.metric_history(good, "loss").count() == 3
    assert not services.metric_history(good, "grad_norm").exists()  # NaN points skipped
    assert good.notes == "first <b>try</b>"
    assert good.artifacts[0]["uri"].endswith("/artifacts")
    assert Run.objects.get(name="mlp-diverged").status == "failed"

    # The experiment goes on; a rerun updates, never duplicates.
    client.log_metric(run_id, "val_acc", 0.91, step=3)
    assert "0 new, 2 updated" in mlexec(*args)
    assert Run.objects.count() == 2
    good = Run.objects.get(pk=good.pk)
    assert [p.step for p in services.metric_history(good, "dev")] == [0, 1, 2, 3]
    assert good.dev == 0.91

    # "diagnose my MLflow experiment" in two commands.
    report = mlexec("diagnose", "digits")
    assert "'mlp-64'" in report and "Dominant problem: variance" in report


def test_since_and_a_file_store(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps it behind a flag
    uri = (tmp_path / "mlruns").as_uri()
    make_store(uri, tmp_path)
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    out = mlexec(
        "import-mlflow",
        "digits",
        "--tracking-uri",
        uri,
        "--experiment",
        "digits-mlp",
        "--since",
        tomorrow,
    )
    assert "Imported 0 MLflow run(s)" in out
    mlexec("import-mlflow", "digits", "--tracking-uri", uri, "--experiment", "digits-mlp")
    assert Run.objects.count() == 2
    assert Run.objects.get(name="mlp-64").dev is None  # nothing mapped: no split metric


def test_bad_input_fails_clearly_and_writes_nothing(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # quicker to make than SQLite
    uri = (tmp_path / "mlruns").as_uri()
    make_store(uri, tmp_path)
    base = ("import-mlflow", "digits", "--tracking-uri", uri)
    with pytest.raises(CommandError, match="No MLflow experiment 'nope'"):
        mlexec(*base, "--experiment", "nope")
    with pytest.raises(CommandError, match="SPLIT=METRIC"):
        mlexec(*base, "--experiment", "digits-mlp", "--map", "validation=val_acc")
    with pytest.raises(CommandError, match="ISO date"):
        mlexec(*base, "--experiment", "digits-mlp", "--since", "last week")
    # loss is not a fraction: mapped to dev it is refused, and neither run is written.
    with pytest.raises(CommandError, match="mlp-64.*Nothing imported"):
        mlexec(*base, "--experiment", "digits-mlp", "--map", "dev=loss")
    assert not Run.objects.exists()
