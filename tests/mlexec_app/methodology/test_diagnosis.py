"""Diagnosis rules on the worked examples of the CS230 method."""

from __future__ import annotations

import pytest

from mlexec_app.methodology.diagnosis import (
    DIAGNOSIS_RULES,
    Confidence,
    Measurements,
    Problem,
    Verdict,
    diagnose,
)

pytestmark = pytest.mark.engine_independent

BIG = {"train_size": 20_000, "train_dev_size": 10_000, "dev_size": 10_000, "test_size": 10_000}

HUGE = dict.fromkeys(BIG, 200000)

# (name, measurements, expected dominant problem, expected confidence)
WORKED = [
    (
        "data mismatch: train 1%, train-dev 1.5%, dev 10%",
        Measurements(human=0.005, train=0.01, train_dev=0.015, dev=0.10, **BIG),
        Problem.DATA_MISMATCH,
        Confidence.DECIDED,
    ),
    (
        "avoidable bias: human 1%, train 8%, dev 10%",
        Measurements(human=0.01, train=0.08, dev=0.10, **BIG),
        Problem.AVOIDABLE_BIAS,
        Confidence.DECIDED,
    ),
    (
        "variance: human 1%, train 1.5%, train-dev 10%, dev 11%",
        Measurements(human=0.01, train=0.015, train_dev=0.10, dev=0.11, **BIG),
        Problem.VARIANCE,
        Confidence.DECIDED,
    ),
    (
        "high bias: human 0.5%, train 15%, train-dev 16%, dev 16.5%",
        Measurements(human=0.005, train=0.15, train_dev=0.16, dev=0.165, **BIG),
        Problem.AVOIDABLE_BIAS,
        Confidence.DECIDED,
    ),
    (
        "bias and variance both large and close: no single winner",
        Measurements(human=0.01, train=0.15, train_dev=0.30, dev=0.305, **BIG),
        Problem.VARIANCE,
        Confidence.INCONCLUSIVE,
    ),
    (
        "everything within half a point: no problem",
        Measurements(human=0.02, train=0.02, train_dev=0.021, dev=0.022, **HUGE),
        None,
        Confidence.NO_PROBLEM,
    ),
]


@pytest.mark.parametrize(
    ("measurements", "dominant", "confidence"),
    [w[1:] for w in WORKED],
    ids=[w[0] for w in WORKED],
)
def test_worked_examples_name_the_dominant_problem(measurements, dominant, confidence):
    result = diagnose(measurements)
    assert result.dominant == dominant
    assert result.confidence == confidence


def test_close_bias_and_variance_lists_both_as_contenders():
    result = diagnose(WORKED[4][1])
    assert set(result.contenders) == {Problem.AVOIDABLE_BIAS, Problem.VARIANCE}


def test_data_mismatch_example_reports_each_gap_with_its_size():
    result = diagnose(WORKED[0][1])
    mismatch = result.gaps[Problem.DATA_MISMATCH]
    assert mismatch.estimate == pytest.approx(0.085)
    assert mismatch.interval.low < 0.085 < mismatch.interval.high
    assert mismatch.verdict is Verdict.PRESENT
    assert "diagnose.data_mismatch" in result.fired()


def test_small_difference_on_small_dev_set_is_inconclusive_with_needed_size():
    m = Measurements(
        human=0.01,
        train=0.04,
        train_dev=0.05,
        dev=0.06,
        train_size=50_000,
        train_dev_size=500,
        dev_size=500,
    )
    result = diagnose(m)
    mismatch = result.gaps[Problem.DATA_MISMATCH]
    assert mismatch.verdict is Verdict.INCONCLUSIVE
    assert mismatch.needed_size is not None and mismatch.needed_size > 500
    finding = next(f for f in result.findings if f.rule_id == "diagnose.data_mismatch")
    assert f"{mismatch.needed_size:,} examples" in finding.message


def test_same_gap_on_large_splits_is_decided():
    m = Measurements(
        human=0.01,
        train=0.01,
        train_dev=0.05,
        dev=0.06,
        train_size=200_000,
        train_dev_size=50_000,
        dev_size=50_000,
    )
    assert diagnose(m).gaps[Problem.DATA_MISMATCH].verdict is Verdict.PRESENT


def test_tiny_dev_set_fires_its_rule_and_decides_nothing():
    m = Measurements(
        human=0.0,
        train=0.0,
        train_dev=0.0,
        dev=0.6,
        train_size=10_000,
        train_dev_size=10_000,
        dev_size=20,
    )
    result = diagnose(m)
    assert "diagnose.small_dev_set" in result.fired()
    assert result.gaps[Problem.DATA_MISMATCH].verdict is Verdict.INCONCLUSIVE
    assert result.confidence is Confidence.INCONCLUSIVE


def test_human_level_exceeded():
    result = diagnose(Measurements(human=0.02, train=0.005, train_dev=0.01, dev=0.015, **BIG))
    assert "diagnose.human_level_exceeded" in result.fired()
    assert result.gaps[Problem.AVOIDABLE_BIAS].verdict is Verdict.ABSENT


def test_human_level_not_exceeded_does_not_fire():
    result = diagnose(Measurements(human=0.01, train=0.02, dev=0.03, **BIG))
    assert "diagnose.human_level_exceeded" not in result.fired()


def test_dev_overfitting_is_reported_but_never_dominates():
    m = Measurements(human=0.01, train=0.03, train_dev=0.035, dev=0.04, test=0.09, **BIG)
    result = diagnose(m)
    assert result.gaps[Problem.DEV_OVERFITTING].verdict is Verdict.PRESENT
    assert "diagnose.dev_overfitting" in result.fired()
    assert result.dominant is Problem.AVOIDABLE_BIAS


def test_without_train_dev_split_variance_is_dev_minus_train_and_flagged():
    result = diagnose(Measurements(human=0.01, train=0.02, dev=0.07, **BIG))
    assert result.gaps[Problem.VARIANCE].upper_split == "dev"
    assert Problem.DATA_MISMATCH not in result.gaps
    assert "diagnose.no_train_dev_split" in result.fired()


def test_unknown_human_level_measures_bias_against_zero_and_says_so():
    result = diagnose(Measurements(train=0.08, train_dev=0.09, dev=0.10, **BIG))
    assert result.gaps[Problem.AVOIDABLE_BIAS].estimate == pytest.approx(0.08)
    assert "diagnose.human_level_unknown" in result.fired()


def test_unknown_sizes_give_point_estimates_not_decisions():
    result = diagnose(Measurements(human=0.01, train=0.08, dev=0.10))
    assert result.dominant is Problem.AVOIDABLE_BIAS
    assert result.confidence is Confidence.POINT_ESTIMATE
    assert "diagnose.sizes_unknown" in result.fired()


def test_target_met_only_when_its_interval_is_under_the_target():
    met = diagnose(Measurements(train=0.01, dev=0.02, target=0.03, dev_size=20_000))
    borderline = diagnose(Measurements(train=0.01, dev=0.029, target=0.03, dev_size=500))
    assert next(f for f in met.findings if f.rule_id == "diagnose.target_met").verdict == "present"
    assert (
        next(f for f in borderline.findings if f.rule_id == "diagnose.target_met").verdict
        == "inconclusive"
    )


def test_missing_measurements():
    result = diagnose(Measurements(train=0.05))
    assert "diagnose.missing_measurements" in result.fired()
    assert result.confidence is Confidence.NOT_ENOUGH_DATA
    assert result.dominant is None


def test_every_diagnosis_rule_fires_in_some_example():
    examples = [w[1] for w in WORKED] + [
        Measurements(human=0.02, train=0.005, train_dev=0.01, dev=0.015, **BIG),
        Measurements(human=0.01, train=0.03, train_dev=0.035, dev=0.04, test=0.09, **BIG),
        Measurements(train=0.01, dev=0.6, dev_size=20, target=0.7),
        Measurements(train=0.05),
        Measurements(human=0.01, train=0.08, dev=0.10),
    ]
    fired = {rule for m in examples for rule in diagnose(m).fired()}
    assert fired == set(DIAGNOSIS_RULES.ids())
