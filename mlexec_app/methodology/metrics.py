"""Metric direction: the engine reasons in error rates, whatever the project measures."""

from __future__ import annotations

import enum

# Normalised values are rounded so that an accuracy of 1 - e and an error of e give the very
# same error after conversion (1 - (1 - 0.1) is 0.09999999999999998 in floating point).
_DIGITS = 12


class Direction(enum.StrEnum):
    """Whether a lower (error rate) or a higher (accuracy-like) value is better."""

    LOWER_IS_BETTER = "lower"
    HIGHER_IS_BETTER = "higher"


def to_error(value: float, direction: Direction) -> float:
    """Convert a metric value in [0, 1] to the error rate it stands for."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"Metric values must be fractions in [0, 1]; got {value!r}.")
    error = value if direction is Direction.LOWER_IS_BETTER else 1.0 - value
    return round(error, _DIGITS)


def to_error_or_none(value: float | None, direction: Direction) -> float | None:
    """:func:`to_error`, passing ``None`` (not measured) through."""
    return None if value is None else to_error(value, direction)


def from_error(error: float, direction: Direction) -> float:
    """Convert an error rate back to the project's own metric units."""
    value = error if direction is Direction.LOWER_IS_BETTER else 1.0 - error
    return round(value, _DIGITS)
