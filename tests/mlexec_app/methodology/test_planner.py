"""The planner: justified interventions only, in the fixed order, more compute last."""

from __future__ import annotations

import pytest

from mlexec_app.methodology.diagnosis import Measurements, diagnose
from mlexec_app.methodology.error_analysis import ceilings
from mlexec_app.methodology.planner import (
    PLAN_RULES,
    Kind,
    Past,
    PlanInputs,
    State,
    Status,
    plan,
)

pytestmark = pytest.mark.engine_independent

BIG = {"train_size": 20_000, "train_dev_size": 10_000, "dev_size": 10_000, "test_size": 10_000}
BIAS = Measurements(human=0.01, train=0.08, train_dev=0.085, dev=0.09, **BIG)
VARIANCE = Measurements(human=0.01, train=0.015, train_dev=0.10, dev=0.102, **BIG)
MISMATCH = Measurements(human=0.005, train=0.01, train_dev=0.015, dev=0.10, **BIG)
HEALTHY = Measurements(
    human=0.02, train=0.02, train_dev=0.021, dev=0.022, test=0.022, **dict.fromkeys(BIG, 200000)
)


def inputs(m, **kwargs):
    return PlanInputs(diagnosis=diagnose(m), **kwargs)


def ids(candidates):
    return [c.rule_id for c in candidates]


def test_plan_is_in_the_fixed_priority_order():
    result = plan(inputs(VARIANCE, data_type="image"))
    priorities = [c.kind.priority for c in result.recommended]
    assert priorities == sorted(priorities)
    assert ids(result.recommended) == [
        "plan.data_quality.more_training_data",
        "plan.hyperparameters.regularise",
        "plan.fine_tune.pretrained",
    ]


def test_data_mismatch_is_answered_with_data_first():
    result = plan(inputs(MISMATCH))
    assert result.next is not None
    assert result.next.rule_id == "plan.data_quality.match_distributions"
    assert result.next.expected_gain == pytest.approx(0.085)


def test_avoidable_bias_defers_more_compute_until_earlier_steps_are_tried():
    first = plan(inputs(BIAS, data_type="tabular", abstraction_layer="traditional_ml"))
    assert ids(first.recommended) == ["plan.hyperparameters.fit_better", "plan.architecture.bias"]
    assert ids(first.deferred) == ["plan.more_compute.scale_up"]
    assert "plan.hyperparameters.fit_better" in first.deferred_reason


def test_more_compute_is_recommended_once_everything_earlier_was_tried():
    history = [
        Past("plan.hyperparameters.fit_better", Status.DONE),
        Past("plan.architecture.bias", Status.ABANDONED),
    ]
    result = plan(inputs(BIAS, data_type="tabular", history=history))
    assert ids(result.recommended) == ["plan.more_compute.scale_up"]
    assert ids(result.tried) == ["plan.hyperparameters.fit_better", "plan.architecture.bias"]


def test_an_in_progress_step_stays_in_the_plan_and_still_blocks_compute():
    history = [
        Past("plan.hyperparameters.fit_better", Status.IN_PROGRESS),
        Past("plan.architecture.bias", Status.DONE),
    ]
    result = plan(inputs(BIAS, data_type="tabular", history=history))
    assert [(c.rule_id, c.state) for c in result.recommended] == [
        ("plan.hyperparameters.fit_better", State.OPEN)
    ]
    assert ids(result.deferred) == ["plan.more_compute.scale_up"]


def test_nothing_unjustified_is_proposed():
    result = plan(inputs(HEALTHY, data_type="image", label_quality=0.995))
    assert result.recommended == [] and result.deferred == []


def test_fine_tuning_is_for_unstructured_data_or_llm_projects():
    tabular = plan(inputs(BIAS, data_type="tabular", abstraction_layer="traditional_ml"))
    text = plan(inputs(BIAS, data_type="text"))
    assert "plan.fine_tune.pretrained" not in ids(tabular.recommended)
    assert "plan.fine_tune.pretrained" in ids(text.recommended)


def test_poor_labels_come_first():
    result = plan(inputs(BIAS, label_quality=0.9))
    assert result.next is not None and result.next.rule_id == "plan.data_quality.fix_labels"


def test_error_analysis_points_at_the_biggest_category_and_the_labels():
    rows = ceilings({"blurry": 40, "mislabeled": 20, "dog": 3}, 100, dev_error=0.09)
    result = plan(inputs(BIAS, categories=rows))
    by_id = {c.rule_id: c for c in result.recommended}
    assert by_id["plan.data_quality.top_error_category"].expected_gain == pytest.approx(0.036)
    assert "blurry" in by_id["plan.data_quality.top_error_category"].title
    assert by_id["plan.data_quality.fix_labels"].expected_gain == pytest.approx(0.018)


def test_tiny_categories_are_not_worth_an_intervention():
    rows = ceilings({"dog": 2}, 100, dev_error=0.09)
    assert "plan.data_quality.top_error_category" not in ids(
        plan(inputs(BIAS, categories=rows)).recommended
    )


def test_inconclusive_diagnosis_asks_for_a_bigger_dev_set():
    small = Measurements(
        human=0.01,
        train=0.05,
        train_dev=0.06,
        dev=0.08,
        train_size=5000,
        train_dev_size=300,
        dev_size=300,
    )
    result = plan(inputs(small))
    assert result.next is not None
    assert result.next.rule_id == "plan.data_quality.grow_dev_set"
    assert "examples per split" in result.next.rationale


def test_dev_overfitting_asks_for_a_bigger_dev_set():
    m = Measurements(human=0.01, train=0.03, train_dev=0.035, dev=0.04, test=0.09, **BIG)
    assert "plan.data_quality.grow_dev_set" in ids(plan(inputs(m)).recommended)


def test_every_plan_rule_is_reachable():
    history = [
        Past("plan.hyperparameters.fit_better", Status.DONE),
        Past("plan.architecture.bias", Status.DONE),
        Past("plan.fine_tune.pretrained", Status.DONE),
    ]
    rows = ceilings({"blurry": 40, "mislabeled": 20}, 100, dev_error=0.11)
    m = Measurements(human=0.01, train=0.08, train_dev=0.15, dev=0.25, test=0.35, **BIG)
    result = plan(inputs(m, data_type="image", categories=rows, history=history))
    seen = ids(result.recommended) + ids(result.tried) + ids(result.deferred)
    assert set(seen) == set(PLAN_RULES.ids())
    assert all(c.kind is not Kind.MORE_COMPUTE for c in result.recommended)
