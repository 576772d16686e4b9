"""The measured fall over the last doubling, and what it lets a learning curve decide.

The curves below are real: the benchmark's (bench/learning_curves.py) 5-fold dev errors on a
tenth of scikit-learn's digits and of its breast-cancer data, 36 and 12 dev rows per fold.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlexec_app.diagnostics.learning_curve import (
    CANT_TELL,
    MAX_EXPONENT,
    WILL_HELP,
    Fall,
    PowerLaw,
    fall,
    judge,
)

pytestmark = pytest.mark.engine_independent

DIGITS_SIZES = [50, 62, 76, 94, 116, 143]
DIGITS_DEV = np.array(
    [
        [0.3333, 0.3056, 0.2778, 0.2222, 0.0833, 0.1667],
        [0.2222, 0.1667, 0.2222, 0.1944, 0.1667, 0.1111],
        [0.1944, 0.1944, 0.2222, 0.2222, 0.1389, 0.1111],
        [0.1389, 0.1389, 0.1389, 0.1111, 0.1111, 0.1111],
        [0.1143, 0.1143, 0.1429, 0.0857, 0.0571, 0.0857],
    ]
)
# Falls steeply, then stops: ten times the data really gained nothing (-0.012).
BREAST_SIZES = [10, 14, 18, 25, 33, 45]
BREAST_DEV = np.array(
    [
        [0.0833, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0833, 0.0833, 0.0833, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.2727, 0.1818, 0.0909, 0.0, 0.0, 0.0],
        [0.3636, 0.3636, 0.3636, 0.1818, 0.0909, 0.0909],
    ]
)


def test_a_fall_measured_across_folds_decides_more_data_will_help():
    """Ten times the data lowered this curve's dev error by 0.094. Differencing two wide
    extrapolations said "can't tell yet" (gain interval -0.177 to +0.128); the fall over the
    last doubling, 0.084 and at least 0.052 across the folds, is a least gain on its own."""
    curve = judge(DIGITS_SIZES, np.zeros(6), DIGITS_DEV, None, dev_rows=179)
    assert curve.verdict == WILL_HELP
    assert curve.fall is not None and (curve.fall["start"], curve.fall["end"]) == (76, 143)
    assert curve.gain is not None and curve.gain["low"] >= curve.fall["low"] > 0.04
    assert "Measured: dev error fell by 0.084 from 76 to 143 training examples" in curve.reason


def test_a_curve_that_stopped_falling_stays_cant_tell_and_its_gain_is_never_negative():
    """The last doubling fell by no more than its noise: no least gain, so no "will help";
    and the gain's interval starts at 0, not below (more data does not raise the expected
    dev error; the interval used to reach -0.076)."""
    curve = judge(BREAST_SIZES, np.zeros(6), BREAST_DEV, None, dev_rows=57)
    assert curve.verdict == CANT_TELL
    assert curve.fall is not None and curve.fall["low"] <= 0
    assert curve.gain is not None and curve.gain["low"] == 0.0
    assert "Measured" not in curve.reason


@pytest.mark.parametrize("exponent", [0.1, 0.3, 0.6, MAX_EXPONENT])
@pytest.mark.parametrize("factor", [2.0, 10.0])
def test_the_least_gain_never_exceeds_what_a_power_law_gains(exponent, factor):
    """Noise-free power laws with a floor, as steep as allowed or gentler: the least gain
    read from their fall over a doubling is at most what the data really gains, and equal
    for the steepest."""
    law = PowerLaw(a=2.0, exponent=exponent, asymptote=0.05)
    start, end = 400, 800
    drop = law.predict(start) - law.predict(end)
    least = Fall(start, end, drop, drop).least_gain(factor)
    real = law.predict(end) - law.predict(end * factor)
    assert 0 < least <= real + 1e-12
    if exponent == MAX_EXPONENT:
        assert least == pytest.approx(real)


def test_the_fall_bound_reads_the_noise_of_the_rows_that_changed():
    """Five folds that agree exactly still leave the noise of the rows whose answer changed
    (McNemar): a 0.02 fall on 100 dev rows is not certain."""
    dev = np.tile([0.30, 0.25, 0.22, 0.20], (5, 1))
    measured = fall(np.array([100, 200, 400, 800]), dev, dev_rows=100)
    assert measured is not None and (measured.start, measured.end) == (400, 800)
    assert measured.value == pytest.approx(0.02)
    assert measured.low < 0.0
    assert fall(np.array([100]), dev[:, :1], dev_rows=100) is None
