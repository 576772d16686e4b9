"""Per-slice error analysis of dev-set errors: by a column of the data, or by true class.

Each slice's share of all dev errors is the ceiling on what fixing that slice can gain (the
CS230 error-analysis rule). Dev errors whose label is itself suspect are counted in one more
category, "suspected label error", since no model change fixes those.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlexec_app.diagnostics.data import Dataset

MISLABELED = "suspected label error"


@dataclass(frozen=True)
class SliceStats:
    name: str
    examples: int
    errors: int
    error_rate: float
    share_of_errors: float


@dataclass(frozen=True)
class SliceAnalysis:
    """Dev errors per slice, worst share first, and the counts for the ErrorAnalysis ledger."""

    by: str
    total_errors: int
    dev_examples: int
    slices: list[SliceStats]
    categories: dict[str, int]
    top_confusions: list[tuple[str, str, int]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def slice_errors(
    data: Dataset,
    dev_rows: np.ndarray,
    predicted: np.ndarray,
    suspected_label_errors: np.ndarray | None = None,
) -> SliceAnalysis:
    """Tally dev errors by ``data.slices`` when present, else by true class."""
    given = data.y[dev_rows]
    wrong = predicted != given
    if data.slices is not None:
        by, keys = data.slice_name or "slice", data.slices[dev_rows].astype(str)
    else:
        by, keys = "class", np.array([f"class {data.classes[c]}" for c in given])
    total = int(wrong.sum())
    stats = []
    for key in sorted(set(keys.tolist())):
        inside = keys == key
        errors = int(wrong[inside].sum())
        stats.append(
            SliceStats(
                name=key,
                examples=int(inside.sum()),
                errors=errors,
                error_rate=round(errors / int(inside.sum()), 4),
                share_of_errors=round(errors / total, 4) if total else 0.0,
            )
        )
    stats.sort(key=lambda s: (-s.errors, s.name))
    categories = {s.name: s.errors for s in stats if s.errors}
    if suspected_label_errors is not None:
        mislabeled = int((wrong & suspected_label_errors[dev_rows]).sum())
        if mislabeled:
            categories[MISLABELED] = mislabeled
    return SliceAnalysis(
        by, total, len(dev_rows), stats, categories, _confusions(data, given, predicted)
    )


def _confusions(
    data: Dataset, given: np.ndarray, predicted: np.ndarray
) -> list[tuple[str, str, int]]:
    pairs: dict[tuple[int, int], int] = {}
    for g, p in zip(given.tolist(), predicted.tolist(), strict=True):
        if g != p:
            pairs[(g, p)] = pairs.get((g, p), 0) + 1
    ranked = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:5]
    return [(data.classes[g], data.classes[p], n) for (g, p), n in ranked]
