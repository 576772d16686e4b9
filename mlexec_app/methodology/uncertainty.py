"""How sure we can be of an error rate measured on n examples, and of a gap between two.

Wilson score intervals for one proportion (well behaved near 0 and on small n, unlike the
normal approximation) and Newcombe's hybrid score interval for the difference of two
(Newcombe 1998, "method 10"), built from the two Wilson intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

DEFAULT_CONFIDENCE = 0.95


def z_value(confidence: float = DEFAULT_CONFIDENCE) -> float:
    """Two-sided standard normal quantile for ``confidence`` (1.96 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval."""

    estimate: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def exact(value: float) -> Interval:
    """A value known without sampling error (a stated human level, or an unknown split size)."""
    return Interval(value, value, value)


def wilson(error: float, n: int | None, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Wilson score interval of an error rate measured on ``n`` examples.

    Parameters
    ----------
    error: observed error rate in [0, 1].
    n: number of examples; ``None`` means unknown, and the value is taken as exact.

    Returns
    -------
    The interval, clipped to [0, 1].
    """
    if n is None:
        return exact(error)
    if n <= 0:
        raise ValueError(f"A split size must be positive; got {n}.")
    z = z_value(confidence)
    denominator = 1.0 + z * z / n
    centre = (error + z * z / (2 * n)) / denominator
    spread = z * math.sqrt(error * (1 - error) / n + z * z / (4 * n * n)) / denominator
    return Interval(error, max(0.0, centre - spread), min(1.0, centre + spread))


def gap(upper: Interval, lower: Interval) -> Interval:
    """Interval of ``upper - lower`` (Newcombe's hybrid score method)."""
    estimate = upper.estimate - lower.estimate
    below = math.hypot(upper.estimate - upper.low, lower.high - lower.estimate)
    above = math.hypot(upper.high - upper.estimate, lower.estimate - lower.low)
    return Interval(estimate, estimate - below, estimate + above)


def sample_size_for_gap(
    p_low: float,
    difference: float,
    confidence: float = DEFAULT_CONFIDENCE,
    both_sampled: bool = True,
) -> int | None:
    """Examples per split needed for a gap of ``difference`` above ``p_low`` to be decided.

    Starts from the normal approximation (``z * sd < difference``) and grows it by 5% steps
    until the Wilson/Newcombe interval of the gap excludes 0, since score intervals are a
    little wider than the normal one. ``both_sampled`` is False when the lower side is exact
    (a stated human level). ``None`` when the difference is 0.
    """
    if difference <= 0:
        return None
    low_p = min(p_low, 1.0 - difference)
    high_p = low_p + difference
    variance = high_p * (1 - high_p) + (low_p * (1 - low_p) if both_sampled else 0.0)
    z = z_value(confidence)
    n = max(1, math.ceil(z * z * variance / (difference * difference)))
    while not _decided(high_p, low_p, n, confidence, both_sampled):
        n = math.ceil(n * 1.05) + 1
    return n


def _decided(high_p: float, low_p: float, n: int, confidence: float, both: bool) -> bool:
    lower = wilson(low_p, n, confidence) if both else exact(low_p)
    return gap(wilson(high_p, n, confidence), lower).low > 0
