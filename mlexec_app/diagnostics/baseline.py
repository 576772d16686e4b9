"""A baseline run: train once, measure error on train, train-dev, dev and test.

The four numbers are what the diagnosis reads (avoidable bias, variance, data mismatch, dev
overfitting). The splits are stratified and disjoint; train-dev comes from the training
distribution but is never trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlexec_app.diagnostics.data import Dataset
from mlexec_app.diagnostics.folds import stratified_folds
from mlexec_app.diagnostics.networks import ModelSpec
from mlexec_app.diagnostics.progress import Progress
from mlexec_app.diagnostics.training import TrainConfig, fit_predict

SPLITS = ("train", "train_dev", "dev", "test")


@dataclass(frozen=True)
class BaselineResult:
    """Error rates per split, their sizes, and the dev predictions for error analysis."""

    errors: dict[str, float]
    sizes: dict[str, int]
    spec: dict[str, Any]
    config: dict[str, Any]
    trusted_dev_error: float | None = None
    dev_rows: np.ndarray | None = field(default=None, repr=False, compare=False)
    dev_predictions: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("dev_rows")
        data.pop("dev_predictions")
        return data


def split_rows(y: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Stratified 14/2/2/2 twentieths: train 70%, train-dev, dev and test 10% each."""
    parts = stratified_folds(y, 10, seed)
    train = np.any(parts[:7], axis=0)
    return {
        "train": np.flatnonzero(train),
        "train_dev": np.flatnonzero(parts[7]),
        "dev": np.flatnonzero(parts[8]),
        "test": np.flatnonzero(parts[9]),
    }


def baseline_run(
    data: Dataset,
    *,
    spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    suspected_label_errors: np.ndarray | None = None,
    progress: Progress | None = None,
) -> BaselineResult:
    """Train ``spec`` on the train split and measure every split's error.

    With ``suspected_label_errors`` (a boolean mask), also report the dev error on the dev rows
    whose labels are trusted: errors against wrong labels overstate the model's real error.
    """
    spec = spec or ModelSpec()
    config = config or TrainConfig()
    rows = split_rows(data.y, config.seed)
    mask = np.zeros(len(data.y), bool)
    mask[rows["train"]] = True
    tick = progress.ticker("epoch") if progress else None
    probs = fit_predict(
        data.X, data.y, mask[None], data.n_classes, spec, config,
        image_shape=data.image_shape, tick=tick,
    )[0]  # fmt: skip
    predicted = probs.argmax(1)
    wrong = predicted != data.y
    errors = {split: round(float(wrong[r].mean()), 4) for split, r in rows.items()}
    trusted = None
    if suspected_label_errors is not None:
        kept = rows["dev"][~suspected_label_errors[rows["dev"]]]
        trusted = round(float(wrong[kept].mean()), 4) if len(kept) else None
    return BaselineResult(
        errors=errors,
        sizes={split: len(r) for split, r in rows.items()},
        spec=spec.to_dict(),
        config=config.to_dict(),
        trusted_dev_error=trusted,
        dev_rows=rows["dev"],
        dev_predictions=predicted[rows["dev"]],
    )
