"""Properties of the engine, checked with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlexec_app.methodology.cost import CostInputs, break_even, monthly_costs
from mlexec_app.methodology.diagnosis import (
    DEFAULT_MIN_DEV_SIZE,
    Confidence,
    Measurements,
    Problem,
    Verdict,
    diagnose,
)
from mlexec_app.methodology.metrics import Direction
from mlexec_app.methodology.planner import Kind, Past, PlanInputs, State, Status, candidates, plan

pytestmark = pytest.mark.engine_independent

SPLITS = ("train", "train_dev", "dev", "test")


ANY_SIZE = st.integers(1, 50_000)


@st.composite
def measured(draw, dev_sizes=ANY_SIZE):
    """Error rates as counts over split sizes, the way they are measured."""
    values: dict[str, float | int | None] = {}
    for split in SPLITS:
        size = draw(dev_sizes) if split == "dev" else draw(st.integers(1, 50_000))
        present = split == "dev" or draw(st.booleans())
        values[f"{split}_size"] = size
        values[split] = draw(st.integers(0, size)) / size if present else None
    values["human"] = draw(st.none() | st.integers(0, 1000).map(lambda k: k / 1000))
    values["target"] = draw(st.none() | st.integers(0, 1000).map(lambda k: k / 1000))
    return values


def summary(d):
    return (
        d.dominant,
        d.confidence,
        tuple(d.contenders),
        {p: (g.verdict, g.needed_size) for p, g in d.gaps.items()},
        [(f.rule_id, f.verdict) for f in d.findings],
    )


@settings(max_examples=300, deadline=None)
@given(measured())
def test_metric_direction_never_changes_the_verdict(values):
    as_error = Measurements.from_metric(Direction.LOWER_IS_BETTER, **values)
    accuracy = {
        k: (None if v is None else (v if k.endswith("_size") else 1 - v)) for k, v in values.items()
    }
    as_accuracy = Measurements.from_metric(Direction.HIGHER_IS_BETTER, **accuracy)
    assert summary(diagnose(as_error)) == summary(diagnose(as_accuracy))


@settings(max_examples=300, deadline=None)
@given(measured(dev_sizes=st.integers(1, DEFAULT_MIN_DEV_SIZE - 1)))
def test_a_tiny_dev_set_never_yields_a_confident_verdict(values):
    d = diagnose(Measurements(**values))
    assert d.confidence in (Confidence.INCONCLUSIVE, Confidence.NOT_ENOUGH_DATA)
    for problem, gap in d.gaps.items():
        if "dev" in (gap.upper_split, gap.lower_split):
            assert gap.verdict is Verdict.INCONCLUSIVE, problem


HISTORY = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "plan.data_quality.grow_dev_set",
                "plan.data_quality.fix_labels",
                "plan.data_quality.match_distributions",
                "plan.data_quality.more_training_data",
                "plan.hyperparameters.fit_better",
                "plan.hyperparameters.regularise",
                "plan.architecture.bias",
                "plan.fine_tune.pretrained",
                "plan.more_compute.scale_up",
            ]
        ),
        st.sampled_from(list(Status)),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    measured(),
    HISTORY,
    st.sampled_from(["tabular", "image", "text", "other"]),
    st.none() | st.floats(0.5, 1.0),
)
def test_the_plan_never_recommends_more_compute_while_an_earlier_step_is_open(
    values, history, data_type, label_quality
):
    inputs = PlanInputs(
        diagnosis=diagnose(Measurements(**values)),
        data_type=data_type,
        label_quality=label_quality,
        history=[Past(rule, status) for rule, status in history],
    )
    result = plan(inputs)
    if any(c.kind is Kind.MORE_COMPUTE for c in result.recommended):
        earlier = [c for c in candidates(inputs) if c.kind is not Kind.MORE_COMPUTE]
        assert all(c.state is State.TRIED for c in earlier)
    ranks = [c.kind.priority for c in result.recommended]
    assert ranks == sorted(ranks)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(1e-7, 1e-3),
    st.floats(10, 5000),
    st.floats(1, 10_000),
    st.none() | st.floats(0.001, 100),
    st.floats(0.01, 1000),
)
def test_past_break_even_the_small_model_is_never_dearer(price, tokens, hosting, tput, scale):
    inputs = CostInputs(price, tokens, 0, 0, hosting, tput)
    volume = break_even(inputs)
    if volume is None:
        # Never wins: even a fully used instance costs at least what the API would.
        capacity = inputs.capacity_per_instance
        assert price * tokens * capacity <= hosting * (1 + 1e-9)
        return
    for beyond in (volume * (1 + 1e-9), volume * (1 + scale), volume + scale * 1000):
        api, small = monthly_costs(inputs, beyond)
        assert small <= api * (1 + 1e-9)


def test_the_direction_property_sees_real_verdicts():
    # Guards the property above against only ever comparing empty diagnoses.
    d = diagnose(
        Measurements(
            train=0.01,
            train_dev=0.015,
            dev=0.10,
            train_size=10_000,
            train_dev_size=10_000,
            dev_size=10_000,
        )
    )
    assert d.gaps[Problem.DATA_MISMATCH].verdict is Verdict.PRESENT
