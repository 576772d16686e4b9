"""The torch diagnostics on small synthetic data whose truth is known."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlexec_app.diagnostics.data import Dataset, load_demo
from mlexec_app.diagnostics.exceptions import Cancelled
from mlexec_app.diagnostics.label_issues import LabelIssueOptions, find_label_issues
from mlexec_app.diagnostics.learning_curve import WILL_HELP, WONT_HELP, learning_curve
from mlexec_app.diagnostics.networks import ModelSpec
from mlexec_app.diagnostics.progress import Progress
from mlexec_app.diagnostics.sanity import lr_range_test, overfit_small_batch
from mlexec_app.diagnostics.training import TrainConfig, fit_predict

# Its subject does not touch the engines: the first test pass runs it, the second does not.
pytestmark = pytest.mark.engine_independent

torch = pytest.importorskip("torch")

FAST = TrainConfig(epochs=20, min_steps=150)


def separable(n: int = 300, d: int = 10, seed: int = 0) -> Dataset:
    """Two classes split by a random hyperplane, with a margin."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n * 2, d))
    w = rng.normal(size=d)
    score = X @ w / np.linalg.norm(w)
    keep = np.abs(score) > 0.3
    X, score = X[keep][:n], score[keep][:n]
    return Dataset(X.astype(np.float32), (score > 0).astype(np.int64), ["neg", "pos"])


def blobs(n_per_class: int = 200, k: int = 4, d: int = 8, seed: int = 0) -> Dataset:
    """``k`` well-separated Gaussian clusters, one per class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    y = np.repeat(np.arange(k), n_per_class)
    X = centres[y] + rng.normal(size=(len(y), d))
    return Dataset(X.astype(np.float32), y.astype(np.int64), [f"c{i}" for i in range(k)])


def circles(n: int = 400, seed: int = 0) -> Dataset:
    """An inner and an outer ring: no straight line separates them."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    outer = rng.random(n) < 0.5
    radius = np.where(outer, 2.0, 1.0)
    X = np.c_[radius * np.cos(angle), radius * np.sin(angle)] + rng.normal(scale=0.1, size=(n, 2))
    return Dataset(X.astype(np.float32), outer.astype(np.int64), ["inner", "outer"])


class ConstantModel(torch.nn.Module):
    """A buggy model: its output ignores the input."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(n_classes))

    def forward(self, x):
        return self.bias.expand(len(x), -1)


def constant_model(n_features, n_classes, image_shape):
    return ConstantModel(n_classes)


def test_mlp_fits_a_linearly_separable_problem():
    data = separable()
    train = np.arange(len(data.y)) < 200
    probs = fit_predict(data.X, data.y, train[None], 2, ModelSpec(), FAST)[0]
    held_out_accuracy = (probs.argmax(1) == data.y)[~train].mean()
    assert held_out_accuracy >= 0.95


def test_every_model_kind_learns_and_trains_one_by_one_when_not_batched():
    data = blobs(n_per_class=60, k=3, d=4)
    masks = np.zeros((2, len(data.y)), bool)
    masks[0, ::2] = masks[1, 1::2] = True
    config = FAST
    batched = fit_predict(data.X, data.y, masks, 3, ModelSpec(kind="logistic"), config)
    looped = fit_predict(
        data.X, data.y, masks, 3, ModelSpec(kind="factory", factory=f"{__name__}.small_mlp"), config
    )
    for probs in (batched, looped):
        assert probs.shape == (2, len(data.y), 3)
        assert (probs[0].argmax(1) == data.y)[~masks[0]].mean() > 0.95


def small_mlp(n_features, n_classes, image_shape):
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, 16), torch.nn.ReLU(), torch.nn.Linear(16, n_classes)
    )


def test_cnn_learns_small_images():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    images = rng.normal(scale=0.3, size=(200, 1, 6, 6))
    images[y == 1, 0, :, 2:4] += 2.0  # class 1 has a vertical bar
    images[y == 0, 0, 2:4, :] += 2.0  # class 0 a horizontal one
    data = Dataset(images.reshape(200, -1).astype(np.float32), y, ["h", "v"], image_shape=(1, 6, 6))
    train = np.arange(200) < 150
    probs = fit_predict(
        data.X,
        data.y,
        train[None],
        2,
        ModelSpec(kind="cnn"),
        TrainConfig(epochs=10, min_steps=100),
        image_shape=(1, 6, 6),
    )[0]
    assert (probs.argmax(1) == y)[~train].mean() >= 0.95


def test_overfit_small_batch_passes_for_a_working_model():
    check = overfit_small_batch(blobs(k=5, d=6))
    assert check.passed
    assert check.final_loss < 0.05 < check.initial_loss
    assert check.train_accuracy == 1.0


def test_overfit_small_batch_flags_a_model_that_ignores_its_input():
    spec = ModelSpec(kind="factory", factory=f"{__name__}.constant_model")
    check = overfit_small_batch(blobs(k=5, d=6), spec, steps=100)
    assert not check.passed
    assert check.final_loss > 1.0
    assert "bug" in check.message


def test_learning_curve_calls_more_data_helpful_for_a_high_variance_setup():
    # 60 features and a thousand rows: the MLP memorises the training set at every size,
    # and dev error keeps falling as the set grows (with 600 rows the interval of the gain,
    # which holds the shapes' disagreement too, still reaches below the material gain:
    # "can't tell yet").
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1000, 60)).astype(np.float32)
    y = (X @ rng.normal(size=60) > 0).astype(np.int64)
    curve = learning_curve(
        Dataset(X, y, ["a", "b"]), target_error=0.02, spec=ModelSpec(hidden=(64,)),
        config=FAST,
    )  # fmt: skip
    assert curve.verdict == WILL_HELP
    assert curve.train_error[-1] < 0.02  # fits its training data: the gap is variance
    assert curve.dev_error[0] > curve.dev_error[-1] + 0.1
    assert curve.needed_size is not None and curve.needed_size > curve.sizes[-1]
    assert curve.gain["low"] >= 0.01 and curve.extrapolated["10"]["high"] < curve.dev_error[-1]


def test_learning_curve_says_more_data_wont_help_for_a_high_bias_setup():
    # A linear model on two rings: train and dev error stay high whatever the size.
    curve = learning_curve(
        circles(), target_error=0.05, spec=ModelSpec(kind="logistic"), config=FAST
    )
    assert curve.verdict == WONT_HELP
    assert "bias" in curve.reason
    assert curve.needed_size is None
    assert min(curve.train_error) > 0.2


def test_flipped_labels_are_found_with_their_true_label():
    data = blobs(n_per_class=150, k=4, d=6)
    rng = np.random.default_rng(3)
    flipped = rng.choice(len(data.y), 30, replace=False)
    noisy = data.y.copy()
    noisy[flipped] = (noisy[flipped] + rng.integers(1, 4, 30)) % 4
    options = LabelIssueOptions(folds=4, repeats=1)
    result = find_label_issues(
        data.with_labels(noisy), options=options, config=TrainConfig(epochs=20, weight_decay=0.1)
    )
    found = {issue.index for issue in result.issues}
    assert len(found & set(flipped.tolist())) >= 27
    assert len(found - set(flipped.tolist())) <= 3
    assert result.noise_rate == pytest.approx(30 / len(data.y), abs=0.01)
    for issue in result.issues:
        if issue.index in set(flipped.tolist()):
            assert issue.suggested == data.classes[data.y[issue.index]]
    # Ranked: the most suspicious first.
    given = [issue.given_probability for issue in result.issues]
    assert given == sorted(given)


def test_clean_labels_give_few_issues():
    result = find_label_issues(
        blobs(n_per_class=100, k=3, d=6), options=LabelIssueOptions(folds=4, repeats=1, passes=1),
        config=TrainConfig(epochs=15, weight_decay=0.1),
    )  # fmt: skip
    assert result.noise_rate <= 0.01


def test_lr_range_test_suggests_rates_below_divergence():
    result = lr_range_test(load_demo("digits"))
    assert 1e-4 <= result.suggested_min < result.suggested_max < 0.5
    # The test stopped once the loss blew up, and the suggestion stays well below that rate.
    assert len(result.losses) < 100
    assert result.losses[-1] > 2 * min(result.losses)
    assert result.suggested_max < result.learning_rates[-1] / 3
    best = result.learning_rates[result.losses.index(min(result.losses))]
    assert result.suggested_min < best


def test_cancel_stops_training_within_an_epoch():
    data = blobs(n_per_class=200, k=4, d=8)
    events: list[dict] = []
    deadline = {"t": None}

    def should_cancel() -> bool:
        if len(events) >= 3 and deadline["t"] is None:
            deadline["t"] = time.monotonic()
        return deadline["t"] is not None

    progress = Progress(events.append, should_cancel, min_interval=0.0)
    started = time.monotonic()
    with pytest.raises(Cancelled):
        learning_curve(data, config=TrainConfig(epochs=500), progress=progress)
    assert time.monotonic() - deadline["t"] < 1.0
    assert time.monotonic() - started < 10
    assert events[0]["step"] == "sizes"


def _full_plan():
    from mlexec_app.diagnostics.label_issues import DEFAULT_TRAIN
    from mlexec_app.diagnostics.pipeline import Plan

    return Plan(
        model=ModelSpec(hidden=(32,)), train=FAST,
        label_options=LabelIssueOptions(folds=3, repeats=1, passes=1),
        label_train=TrainConfig(**{**DEFAULT_TRAIN.to_dict(), "epochs": 10, "min_steps": 60}),
    )  # fmt: skip


def test_the_learning_curve_runs_beside_the_label_search_with_the_same_result(monkeypatch):
    """On two cores the curve trains in a thread beside the label-issue search; its result
    is what it is alone."""
    import os
    import threading

    from mlexec_app.diagnostics import pipeline

    data = blobs(n_per_class=60, k=3, d=6)
    running: set[str] = set()  # the threads alive at each of the caller's cancel checks

    def note_threads() -> bool:
        running.update(thread.name for thread in threading.enumerate())
        return False

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    report = pipeline.run_diagnostics(data, _full_plan(), Progress(should_cancel=note_threads))
    assert "mlexec-learning_curve" in running
    plan = _full_plan()
    alone = pipeline.run_diagnostics(data, pipeline.Plan(
        diagnostics=("learning_curve",), model=plan.model, train=plan.train,
    ))  # fmt: skip
    assert report["learning_curve"] == alone["learning_curve"]
    assert report["timings"]["learning_curve"] > 0
    assert report["cpu_timings"]["learning_curve"] > 0 and report["cpu_timings"]["label_issues"] > 0


def test_a_cancel_stops_the_curve_running_beside():
    import threading

    from mlexec_app.diagnostics import pipeline

    data = blobs(n_per_class=60, k=3, d=6)
    plan = _full_plan()
    plan.label_train = TrainConfig(epochs=2000, min_steps=60)
    calls = {"n": 0}

    def should_cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    started = time.monotonic()
    with pytest.raises(Cancelled):
        pipeline.run_diagnostics(data, plan, Progress(should_cancel=should_cancel))
    assert time.monotonic() - started < 10
    assert not any(t.name == "mlexec-learning_curve" for t in threading.enumerate())
