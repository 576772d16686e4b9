"""Intervals against published values, and the sample-size estimate against the interval."""

from __future__ import annotations

import pytest

from mlexec_app.methodology.uncertainty import exact, gap, sample_size_for_gap, wilson

pytestmark = pytest.mark.engine_independent


@pytest.mark.parametrize(
    ("errors", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),  # no error seen in 10 is still compatible with 28% error
        (5, 10, 0.2366, 0.7634),
        (81, 263, 0.2553, 0.3662),
    ],
)
def test_wilson_interval_matches_published_values(errors, n, low, high):
    iv = wilson(errors / n, n)
    assert iv.low == pytest.approx(low, abs=1e-4)
    assert iv.high == pytest.approx(high, abs=1e-4)


def test_newcombe_difference_matches_his_worked_example():
    # Newcombe (1998), method 10: 56/70 against 48/80 gives 0.0524 to 0.3339.
    iv = gap(wilson(56 / 70, 70), wilson(48 / 80, 80))
    assert iv.estimate == pytest.approx(0.2)
    assert iv.low == pytest.approx(0.0524, abs=1e-4)
    assert iv.high == pytest.approx(0.3339, abs=1e-4)


def test_unknown_size_is_treated_as_exact():
    iv = wilson(0.1, None)
    assert (iv.low, iv.high) == (0.1, 0.1)


def test_non_positive_size_is_refused():
    with pytest.raises(ValueError, match="positive"):
        wilson(0.1, 0)


@pytest.mark.parametrize(("p_high", "p_low"), [(0.06, 0.05), (0.12, 0.10), (0.30, 0.27)])
def test_needed_sample_size_does_decide_the_gap(p_high, p_low):
    n = sample_size_for_gap(p_low, p_high - p_low)
    decided = gap(wilson(p_high, n), wilson(p_low, n))
    undecided = gap(wilson(p_high, n // 4), wilson(p_low, n // 4))
    assert decided.low > 0
    assert undecided.low <= 0


def test_gap_against_an_exact_value_needs_fewer_examples():
    both = sample_size_for_gap(0.03, 0.02)
    one = sample_size_for_gap(0.03, 0.02, both_sampled=False)
    assert one is not None and both is not None and one < both
    assert gap(wilson(0.05, one), exact(0.03)).low > 0
