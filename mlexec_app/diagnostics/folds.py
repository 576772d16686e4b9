"""Fold masks: stratified k-fold splits, repeated with different shuffles."""

from __future__ import annotations

import numpy as np


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``k`` boolean held-out masks covering every row once, each class spread evenly.

    Rows of each class are shuffled and dealt round-robin, continuing from where the previous
    class stopped, so fold sizes differ by at most one.
    """
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    offset = 0
    for cls in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == cls))
        fold_of[rows] = (np.arange(len(rows)) + offset) % k
        offset += len(rows)
    return [fold_of == fold for fold in range(k)]


def repeated_folds(y: np.ndarray, k: int, repeats: int, seed: int) -> list[np.ndarray]:
    """``repeats`` independent :func:`stratified_folds` splits, concatenated."""
    return [mask for r in range(repeats) for mask in stratified_folds(y, k, seed + r)]
