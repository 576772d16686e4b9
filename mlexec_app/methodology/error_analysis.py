"""Error analysis: how much fixing each category of dev errors could gain at most.

People tag a sample of misclassified dev examples; one error may carry several tags, so the
shares need not add up to 1. A category's ceiling is its share of the errors times the current
dev error: fixing every such error perfectly would lower the dev error by that much, no more.
"""

from __future__ import annotations

from dataclasses import dataclass

from .uncertainty import DEFAULT_CONFIDENCE, Interval, wilson


class ErrorAnalysisError(ValueError):
    """The counts do not describe a sample of errors."""


@dataclass(frozen=True)
class CategoryCeiling:
    category: str
    count: int
    share: Interval  # of the sampled errors, with its Wilson interval
    ceiling: float  # share x dev error: the most that fixing this category can gain
    ceiling_high: float  # the same, at the top of the share's interval


def validate(categories: dict[str, int], sample_size: int) -> None:
    """Raise :class:`ErrorAnalysisError` with a fixable message when the counts are impossible."""
    if sample_size <= 0:
        raise ErrorAnalysisError("sample_size must be a positive number of examined errors.")
    for name, count in categories.items():
        if not name.strip():
            raise ErrorAnalysisError("Category names must not be blank.")
        if count < 0 or count > sample_size:
            raise ErrorAnalysisError(
                f"Category {name!r} has {count} errors; counts must be between 0 and the "
                f"sample size ({sample_size})."
            )


def ceilings(
    categories: dict[str, int],
    sample_size: int,
    dev_error: float,
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[CategoryCeiling]:
    """Each category's ceiling, largest first.

    Parameters
    ----------
    categories: category -> number of sampled errors carrying that tag.
    sample_size: number of dev errors examined.
    dev_error: current dev error rate in [0, 1].
    """
    validate(categories, sample_size)
    rows = []
    for name, count in categories.items():
        share = wilson(count / sample_size, sample_size, confidence)
        rows.append(
            CategoryCeiling(name, count, share, share.estimate * dev_error, share.high * dev_error)
        )
    return sorted(rows, key=lambda r: (-r.ceiling, r.category))
