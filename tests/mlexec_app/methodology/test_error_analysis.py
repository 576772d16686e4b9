"""Error-analysis ceilings."""

from __future__ import annotations

import pytest

from mlexec_app.methodology.error_analysis import ErrorAnalysisError, ceilings

pytestmark = pytest.mark.engine_independent


def test_ceiling_is_share_of_errors_times_dev_error():
    # The classic example: 5 of 100 sampled dev errors are dogs, dev error 10%: fixing every
    # dog error gains at most half a point.
    rows = ceilings({"dog": 5, "great cat": 50, "blurry": 43}, sample_size=100, dev_error=0.10)
    by_name = {r.category: r for r in rows}
    assert by_name["dog"].ceiling == pytest.approx(0.005)
    assert by_name["great cat"].ceiling == pytest.approx(0.05)
    assert [r.category for r in rows] == ["great cat", "blurry", "dog"]


def test_tags_overlap_so_shares_may_sum_past_one():
    rows = ceilings({"blurry": 70, "dark": 60}, sample_size=100, dev_error=0.2)
    assert sum(r.share.estimate for r in rows) == pytest.approx(1.3)
    assert all(r.ceiling <= 0.2 for r in rows)


def test_ceiling_carries_the_uncertainty_of_a_small_sample():
    small = ceilings({"dog": 1}, sample_size=10, dev_error=0.1)[0]
    large = ceilings({"dog": 100}, sample_size=1000, dev_error=0.1)[0]
    assert small.ceiling == pytest.approx(large.ceiling)
    assert small.ceiling_high > large.ceiling_high


@pytest.mark.parametrize(
    ("categories", "sample_size", "message"),
    [
        ({"dog": 11}, 10, "between 0 and the sample size"),
        ({"dog": -1}, 10, "between 0"),
        ({"  ": 1}, 10, "blank"),
        ({"dog": 1}, 0, "positive"),
    ],
)
def test_impossible_counts_are_refused(categories, sample_size, message):
    with pytest.raises(ErrorAnalysisError, match=message):
        ceilings(categories, sample_size, 0.1)
