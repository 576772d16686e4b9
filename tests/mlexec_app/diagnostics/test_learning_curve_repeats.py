"""Small data is measured in several passes of the folds, and the passes are not read as if
they were new dev rows: they share them."""

from __future__ import annotations

import numpy as np
import pytest

from mlexec_app.diagnostics.learning_curve import (
    MAX_REPEATS,
    bootstrap,
    fall,
    measure,
    repeats_for,
)

pytestmark = pytest.mark.engine_independent

SIZES = [40, 56, 80, 113, 160, 226]


def passes(rows: int, repeats: int, noise: float, seed: int = 0) -> np.ndarray:
    """(repeats, sizes, rows) wrong answers: each row's chance of a wrong answer falls with
    the size (its own difficulty times ``n^-0.5``), and each pass's models are off by a shared
    draw of ``noise`` (an unlucky model errs on many of its rows at once)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0.0, 1.4, rows)
    base = np.clip(difficulty[None, :] * (np.array(SIZES)[:, None] / 40.0) ** -0.5, 0, 1)
    shift = rng.normal(0.0, noise, (repeats, len(SIZES), 1))
    return rng.random((repeats, len(SIZES), rows)) < np.clip(base[None] + shift, 0, 1)


def by_fold(wrong: np.ndarray, folds: int = 5) -> np.ndarray:
    """The (passes x folds, sizes) dev errors of ``wrong``, folds dealt round-robin."""
    return np.concatenate([np.stack([w[:, f::folds].mean(1) for f in range(folds)]) for w in wrong])


def test_small_data_gets_more_passes_and_large_data_one():
    assert repeats_for(60) == repeats_for(300) == MAX_REPEATS
    assert repeats_for(600) == 4
    assert repeats_for(1_797) == repeats_for(50_000) == 1  # the noisy digits: unchanged


def test_measure_runs_the_passes_with_their_own_folds():
    torch = pytest.importorskip("torch")  # noqa: F841
    from mlexec_app.diagnostics.data import Dataset
    from mlexec_app.diagnostics.training import TrainConfig

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    data = Dataset(X, y, ["a", "b"])
    sizes, train, dev, wrong = measure(
        data, repeats=3, n_sizes=3, config=TrainConfig(epochs=5, min_steps=20)
    )
    assert dev.shape == train.shape == (15, len(sizes)) and wrong.shape == (3, len(sizes), 200)
    # Every pass holds out every row once (five folds of 40), so its folds' mean is its rows'.
    for r in range(3):
        assert np.allclose(dev[r * 5 : r * 5 + 5].mean(0), wrong[r].mean(1))
    assert not np.array_equal(wrong[0], wrong[1])  # new folds, new subsets, new models


def test_copies_of_one_pass_do_not_make_the_fall_surer():
    """Eight copies of the same pass hold no more than the pass: read as forty folds, the
    fall's lower bound would rise (the copies agree perfectly); read as passes over the same
    rows, it is no surer than the rows allow."""
    one = passes(300, 1, 0.0)
    copies = np.repeat(one, 8, axis=0)
    as_folds = fall(SIZES, by_fold(copies), 300)
    as_passes = fall(SIZES, by_fold(copies), 300, wrong=copies)
    assert as_folds is not None and as_passes is not None
    assert as_passes.value == pytest.approx(as_folds.value)
    changes = one[0, 3].astype(float) - one[0, 5]
    rows_only = 1.2816 * changes.std(ddof=1) / np.sqrt(300)
    assert as_passes.value - as_passes.low >= rows_only - 1e-4
    assert as_passes.low < as_folds.low


def test_passes_shrink_the_training_noise_of_the_fall():
    """Models that err together (a shared shift per pass) make one pass's fall noisy; eight
    passes average that away and the fall's lower bound rises above 0 (across seeds)."""
    lows = {1: [], 8: []}
    for seed in range(20):
        wrong = passes(300, 8, 0.04, seed)
        lows[8].append(fall(SIZES, by_fold(wrong), 300, wrong=wrong).low)
        lows[1].append(fall(SIZES, by_fold(wrong[:1]), 300).low)
    assert np.mean(np.array(lows[8]) > 0) > np.mean(np.array(lows[1]) > 0) + 0.3


def test_the_bootstrap_counts_the_shared_dev_rows_once():
    """Eight copies of one pass: the bootstrap's spread of today's dev error stays that of
    its 300 dev rows (binomial), where resampling forty folds would shrink it by √8."""
    copies = np.repeat(passes(300, 1, 0.0), 8, axis=0)
    crossed = bootstrap(SIZES, by_fold(copies), dev_rows=300, wrong=copies)
    as_folds = bootstrap(SIZES, by_fold(copies), dev_rows=300)
    assert crossed is not None and as_folds is not None
    p = float(copies[0, -1].mean())
    binomial = np.sqrt(p * (1 - p) / 300)
    assert np.std(crossed.current) == pytest.approx(binomial, rel=0.2)
    assert np.std(as_folds.current) < 0.6 * binomial
