"""The Lightning and Transformers callbacks, each on a real tiny CPU training and a live server."""

from __future__ import annotations

import pytest
import torch
from django.contrib.auth import get_user_model

from mlexec_app import keys, services
from mlexec_app.client import Tracker
from mlexec_app.models import Run

# Its subject does not touch the engines: the first test pass runs it, the second does not.
pytestmark = [pytest.mark.slow, pytest.mark.engine_independent]


@pytest.fixture
def tracker(transactional_db, live_server, tmp_path):
    owner = get_user_model().objects.create_user("trainer", password="pw")
    services.create_project(owner, name="Toy", metric_name="accuracy", metric_direction="higher")
    key = keys.create_api_key(owner, "callbacks", all_projects=True)[1]
    with Tracker(live_server.url + "/api/mlexec", key, buffer_dir=tmp_path, retries=0) as t:
        yield t


def toy_data(n=64, features=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


def test_lightning_callback_logs_a_real_fit(tracker, tmp_path):
    lp = pytest.importorskip("lightning.pytorch")
    from mlexec_app.integrations.lightning import MlexecCallback

    class Tiny(lp.LightningModule):
        def __init__(self, lr=0.1):
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(4, 2)

        def step(self, batch, split):
            x, y = batch
            logits = self.layer(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            acc = (logits.argmax(1) == y).float().mean()
            self.log(f"{split}_loss", loss, on_epoch=True, on_step=False)
            self.log(f"{split}_acc", acc, on_epoch=True, on_step=False)
            return loss

        def training_step(self, batch, i):
            return self.step(batch, "train")

        def validation_step(self, batch, i):
            self.step(batch, "val")

        def test_step(self, batch, i):
            self.step(batch, "test")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    def loader(seed):
        x, y = toy_data(seed=seed)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)

    callback = MlexecCallback(tracker, "toy", name="tiny-linear", finish_on="test")
    trainer = lp.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
        default_root_dir=tmp_path,
    )
    trainer.fit(Tiny(), loader(0), loader(1))
    assert Run.objects.get().status == "running"  # finish_on="test"
    trainer.test(trainer.lightning_module, loader(2), verbose=False)

    run = Run.objects.get()
    assert run.name == "tiny-linear" and run.status == "finished"
    assert run.params == {"lr": 0.1}
    assert run.train is not None and run.dev is not None and run.test is not None
    assert run.dev == pytest.approx(run.metrics["val_acc"])
    epochs = [p.step for p in services.metric_history(run, "dev")]
    assert epochs[:3] == [0, 1, 2]


def test_lightning_callback_marks_a_crashed_fit_failed(tracker, tmp_path):
    lp = pytest.importorskip("lightning.pytorch")
    from mlexec_app.integrations.lightning import MlexecCallback

    class Broken(lp.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)

        def training_step(self, batch, i):
            raise RuntimeError("bad batch")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = toy_data()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    trainer = lp.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[MlexecCallback(tracker, "toy")],
        default_root_dir=tmp_path,
    )
    with pytest.raises(RuntimeError, match="bad batch"):
        trainer.fit(Broken(), data)
    run = Run.objects.get()
    assert run.status == "failed" and "bad batch" in run.notes and run.name == "Broken"


def test_transformers_callback_logs_a_real_trainer(tracker, tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from mlexec_app.integrations.huggingface import MlexecTrainerCallback

    # A tiny model from a config: nothing is downloaded.
    config = transformers.BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=2,
    )
    model = transformers.BertForSequenceClassification(config)

    class Tokens(torch.utils.data.Dataset):
        def __init__(self, seed):
            g = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(1, 32, (48, 8), generator=g)
            self.labels = (self.ids[:, 0] > 16).long()

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, i):
            return {
                "input_ids": self.ids[i],
                "attention_mask": torch.ones(8, dtype=torch.long),
                "labels": self.labels[i],
            }

    def accuracy(prediction):
        return {
            "accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
        }

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        per_device_train_batch_size=16,
        eval_strategy="epoch",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        learning_rate=1e-3,
        run_name="tiny-bert",
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=Tokens(0),
        eval_dataset=Tokens(1),
        compute_metrics=accuracy,
        callbacks=[MlexecTrainerCallback(tracker, "toy")],
    )
    trainer.train()

    run = Run.objects.get()
    assert run.name == "tiny-bert" and run.status == "finished"
    assert run.params["learning_rate"] == 1e-3 and run.params["num_train_epochs"] == 2
    assert run.dev == pytest.approx(run.metrics["eval_accuracy"])
    assert [p.step for p in services.metric_history(run, "dev")] == [3, 6]
    assert services.metric_history(run, "loss").count() == 6


def test_a_mapping_to_an_unknown_split_is_refused():
    from mlexec_app.integrations.common import metric_values

    with pytest.raises(ValueError, match="splits"):
        metric_values({"val_acc": 0.9}, {"validation": "val_acc"})
    assert metric_values(
        {"val_acc": torch.tensor(0.9), "note": "x", "dev": 0.1}, {"dev": "val_acc"}
    ) == {"val_acc": pytest.approx(0.9), "dev": pytest.approx(0.9)}
