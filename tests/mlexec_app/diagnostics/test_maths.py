"""Pure maths of the diagnostics: curve fits, verdicts, folds, slices (no training)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlexec_app.diagnostics.data import Dataset
from mlexec_app.diagnostics.exceptions import DiagnosticsError
from mlexec_app.diagnostics.folds import repeated_folds, stratified_folds
from mlexec_app.diagnostics.learning_curve import (
    NOT_NEEDED,
    WILL_HELP,
    WONT_HELP,
    PowerLaw,
    fit_power_law,
    judge,
    training_sizes,
)
from mlexec_app.diagnostics.pipeline import Plan, jsonable
from mlexec_app.diagnostics.sanity import suggest_range
from mlexec_app.diagnostics.slices import MISLABELED, slice_errors

pytestmark = pytest.mark.engine_independent

SIZES = np.array([100, 200, 400, 800, 1600, 3200])


def test_power_law_fit_recovers_a_known_curve():
    truth = PowerLaw(a=3.0, exponent=0.5, asymptote=0.04)
    errors = np.array([truth.predict(n) for n in SIZES])
    law = fit_power_law(SIZES, errors)
    assert law.asymptote == pytest.approx(0.04, abs=0.005)
    assert law.exponent == pytest.approx(0.5, abs=0.05)
    assert law.predict(100_000) == pytest.approx(truth.predict(100_000), abs=0.005)


def test_size_needed_for_a_target_inverts_the_law():
    law = PowerLaw(a=2.0, exponent=0.5, asymptote=0.01)
    size = law.size_for(0.05)
    assert law.predict(size) == pytest.approx(0.05)
    assert law.size_for(0.01) is None  # at the asymptote: never


def test_verdict_will_help_names_the_size_that_reaches_the_target():
    errors = np.array([PowerLaw(2.0, 0.5, 0.0).predict(n) for n in SIZES])
    curve = judge(list(SIZES), np.zeros(6), errors, target_error=0.02)
    assert curve.verdict == WILL_HELP
    assert curve.needed_size == pytest.approx(10_000, rel=0.1)
    assert f"{curve.needed_size:,}"[:3] in curve.reason


def test_verdict_wont_help_when_the_curve_levels_off_above_the_target():
    errors = np.array([PowerLaw(1.0, 0.7, 0.2).predict(n) for n in SIZES])
    curve = judge(list(SIZES), errors - 0.01, errors, target_error=0.1)
    assert curve.verdict == WONT_HELP
    assert curve.reason.startswith("Not reachable with more data: bias")
    assert "is above the target 0.100" in curve.reason
    assert curve.needed_size is None


def test_verdict_target_met_and_flat_curve_without_target():
    flat = np.full(6, 0.3)
    assert judge(list(SIZES), flat, flat, target_error=0.4).verdict == NOT_NEEDED
    assert judge(list(SIZES), flat, flat, target_error=None).verdict == WONT_HELP
    falling = np.array([PowerLaw(2.0, 0.5, 0.0).predict(n) for n in SIZES])
    assert judge(list(SIZES), falling * 0, falling, None).verdict == WILL_HELP


def test_training_sizes_grow_geometrically_up_to_the_pool():
    sizes = training_sizes(1437, 10, 6)
    assert sizes[-1] == 1437 and sizes[0] >= 50
    ratios = np.diff(np.log(sizes))
    assert np.allclose(ratios, ratios[0], atol=0.01)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=10, max_size=200),
    st.integers(2, 6),
    st.integers(0, 10_000),
)
def test_stratified_folds_partition_rows_and_balance_classes(labels, k, seed):
    y = np.array(labels)
    folds = stratified_folds(y, k, seed)
    assert np.array_equal(np.sum(folds, axis=0), np.ones(len(y)))  # every row held out once
    sizes = [int(f.sum()) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for cls in np.unique(y):
        per_fold = [int((y[f] == cls).sum()) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1


def test_repeated_folds_shuffle_differently():
    y = np.repeat(np.arange(3), 20)
    first, second = repeated_folds(y, 5, 2, seed=0)[:5], repeated_folds(y, 5, 2, seed=0)[5:]
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_lr_suggestion_sits_between_steepest_fall_and_the_minimum():
    rates = list(np.geomspace(1e-5, 1.0, 50))
    x = np.log10(rates)
    # Flat, then falling steeply around 1e-3, lowest near 1e-1, then blowing up.
    losses = list(2.3 - 2.0 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) * 10, 0))
    result = suggest_range(rates, losses)
    assert 1e-4 < result.suggested_min < 1e-3 < result.suggested_max < 1e-1


def test_slices_rank_the_worst_slice_first_and_count_suspected_label_errors():
    X = np.zeros((8, 1), np.float32)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    regions = np.array(["north", "north", "south", "south", "north", "south", "south", "south"])
    data = Dataset(X, y, ["no", "yes"], slices=regions, slice_name="region")
    predicted = np.array([0, 0, 1, 1, 1, 0, 0, 1])  # four errors, all in the south
    suspected = np.zeros(8, bool)
    suspected[2] = True
    analysis = slice_errors(data, np.arange(8), predicted, suspected)
    assert analysis.by == "region"
    assert analysis.slices[0].name == "south"
    assert analysis.slices[0].share_of_errors == 1.0
    assert analysis.categories == {"south": 4, MISLABELED: 1}


def test_slices_default_to_true_class():
    data = Dataset(np.zeros((4, 1), np.float32), np.array([0, 0, 1, 1]), ["cat", "dog"])
    analysis = slice_errors(data, np.arange(4), np.array([0, 0, 0, 0]))
    assert analysis.categories == {"class dog": 2}
    assert analysis.top_confusions == [("dog", "cat", 2)]


def test_plan_rejects_unknown_diagnostics_and_adds_what_slices_need():
    with pytest.raises(DiagnosticsError, match="Unknown diagnostics"):
        Plan(diagnostics=("learning_curve", "astrology"))
    assert Plan(diagnostics=("slices",)).diagnostics == ("baseline", "slices")


def test_jsonable_turns_numpy_into_plain_types():
    out = jsonable({"a": np.float32(0.5), "b": (np.int64(2), np.array([1, 2])), 3: float("nan")})
    assert out == {"a": 0.5, "b": [2, [1, 2]], "3": None}
    assert type(out["a"]) is float and type(out["b"][0]) is int


def test_standardisation_uses_only_each_members_training_rows():
    from mlexec_app.diagnostics.training import standardize_stats

    rng = np.random.default_rng(0)
    X = rng.normal(loc=5.0, scale=3.0, size=(50, 4))
    X[:, 3] = 7.0  # a constant column: scale 1, never a division by zero
    masks = np.zeros((2, 50), bool)
    masks[0, :20] = masks[1, 10:] = True
    mean, scale = standardize_stats(X, masks)
    assert mean.shape == scale.shape == (2, 1, 4)
    for member in range(2):
        rows = X[masks[member]]
        assert np.allclose(mean[member, 0], rows.mean(0), atol=1e-5)
        assert np.allclose(scale[member, 0, :3], rows[:, :3].std(0), atol=1e-4)
        assert scale[member, 0, 3] == 1.0


def test_a_curve_that_still_speeds_up_is_followed_by_the_shape_that_can():
    """A plateau that starts to fall: the held-out sizes weigh the plateau shape up, and the
    interval at ten times the data holds the truth that a power law alone misses."""
    from mlexec_app.diagnostics.learning_curve import PLATEAU, bootstrap

    def truth(n):
        return 0.05 + 0.45 / (1 + (n / 2000) ** 1.5)

    sizes = np.geomspace(50, 1600, 6).round()
    rng = np.random.default_rng(0)
    dev = np.array([[truth(n) for n in sizes]] * 5) + rng.normal(0, 0.004, (5, 6))
    boot = bootstrap(sizes, dev, dev_rows=8000)
    assert max(boot.weights, key=boot.weights.get) == PLATEAU
    at_10x = boot.predicted(16_000)
    assert at_10x.low <= truth(16_000) <= at_10x.high
    assert abs(at_10x.value - truth(16_000)) < abs(boot.law.predict(16_000) - truth(16_000))


def test_the_points_nearest_the_extrapolation_weigh_most():
    """A curve none of the shapes is: a fast fall that dies out under a slow one. Weighted by
    size over binomial noise, the fit follows the larger sizes, whose slope is the one that
    continues: the 10x prediction misses by 0.002 (by inverse noise alone: 0.0075)."""
    from mlexec_app.diagnostics.learning_curve import bootstrap

    def truth(n):
        return 3.0 / n + 0.5 * n**-0.2

    sizes = np.geomspace(50, 1600, 6).round()
    boot = bootstrap(sizes, np.array([[truth(n) for n in sizes]]), dev_rows=4000)
    assert abs(boot.value(16_000) - truth(16_000)) < 0.004
