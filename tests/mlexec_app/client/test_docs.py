"""Every example in docs/mlexec/tracking.md runs, against a live server."""

from __future__ import annotations

import re
import shlex
from io import StringIO
from pathlib import Path

import pytest
import torch
from django.contrib.auth import get_user_model
from django.core.management import call_command

from mlexec_app import keys, services
from mlexec_app.models import Run

# Its subject does not touch the engines: the first test pass runs it, the second does not.
pytestmark = pytest.mark.engine_independent

DOC = Path(__file__).resolve().parents[3] / "docs" / "mlexec" / "tracking.md"


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def python_block(marker):
    (code,) = [b for b in blocks("python") if marker in b]
    return code


@pytest.fixture
def digits(transactional_db, live_server, monkeypatch, tmp_path):
    owner = get_user_model().objects.create_user("docs", password="pw")
    project = services.create_project(
        owner, name="Digits", metric_name="accuracy", metric_direction="higher", human_level=0.99
    )
    services.record_assessment(project, train_size=1000, train_dev_size=300, dev_size=300)
    monkeypatch.setenv("MLEXEC_URL", live_server.url + "/api/mlexec")
    monkeypatch.setenv("MLEXEC_API_KEY", keys.create_api_key(owner, "docs", all_projects=True)[1])
    monkeypatch.setenv("MLEXEC_BUFFER_DIR", str(tmp_path / "buffer"))
    return project


def test_the_client_example(digits):
    exec(python_block("tracker.start_run"), {})
    run = Run.objects.get()
    assert (run.name, run.status, run.dev) == ("mlp-64", "finished", pytest.approx(0.87))
    assert run.artifacts == [{"name": "weights", "uri": "s3://models/mlp-64.pt"}]


@pytest.mark.slow
def test_the_lightning_example(digits):
    pl = pytest.importorskip("lightning.pytorch")

    class Model(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)

        def step(self, batch, split):
            logits = self.layer(batch[0])
            self.log(f"{split}_acc", (logits.argmax(1) == batch[1]).float().mean())
            return torch.nn.functional.cross_entropy(logits, batch[1])

        def training_step(self, batch, i):
            return self.step(batch, "train")

        def validation_step(self, batch, i):
            self.step(batch, "val")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x = torch.randn(32, 4)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16
    )
    exec(
        python_block("MlexecCallback("),
        {"model": Model(), "train_loader": data, "val_loader": data},
    )
    run = Run.objects.get()
    assert run.name == "lit-mlp" and run.status == "finished"
    assert run.train is not None and run.dev is not None


@pytest.mark.slow
def test_the_transformers_example(digits, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=2,
    )
    ids = torch.randint(1, 32, (32, 8))
    rows = [{"input_ids": i, "labels": int(i[0] > 16)} for i in ids]

    def compute_metrics(p):
        return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}

    exec(
        python_block("MlexecTrainerCallback(run=run)"),
        {
            "output_dir": str(tmp_path / "out"),
            "model": transformers.BertForSequenceClassification(config),
            "train_dataset": rows,
            "eval_dataset": rows,
            "compute_metrics": compute_metrics,
        },
    )
    run = Run.objects.get()
    assert run.name == "tiny-bert" and run.status == "finished"
    assert run.dev == pytest.approx(run.metrics["eval_accuracy"])


def test_the_mlflow_example(digits, tmp_path, monkeypatch):
    tracking = pytest.importorskip("mlflow.tracking")
    monkeypatch.chdir(tmp_path)  # the example's sqlite:///mlflow.db is relative
    client = tracking.MlflowClient(tracking_uri="sqlite:///mlflow.db")
    experiment = client.create_experiment("digits-mlp", artifact_location=str(tmp_path / "a"))
    run_id = client.create_run(experiment, run_name="mlp").info.run_id
    for step, (train, val) in enumerate([(0.9, 0.85), (0.99, 0.9)]):
        client.log_metric(run_id, "train_acc", train, step=step)
        client.log_metric(run_id, "val_acc", val, step=step)
    client.set_terminated(run_id)
    (commands,) = [b for b in blocks("sh") if "import-mlflow" in b]
    output = StringIO()
    for line in commands.strip().splitlines():
        args = shlex.split(line)
        assert args[:3] == ["python", "manage.py", "mlexec"]
        call_command("mlexec", *args[3:], stdout=output)
    assert "1 new" in output.getvalue()
    assert "Dominant problem: variance" in output.getvalue()
