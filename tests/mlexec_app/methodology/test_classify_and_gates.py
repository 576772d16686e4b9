"""Where to start, and what must hold to move on."""

from __future__ import annotations

import pytest

from mlexec_app.methodology.classify import DATA_TYPES, LAYERS, classify
from mlexec_app.methodology.diagnosis import Measurements, diagnose
from mlexec_app.methodology.gates import GateInputs, can_enter, gates_between, gates_for

pytestmark = pytest.mark.engine_independent


def test_tabular_data_with_traditional_ml_recommends_boosted_trees():
    rec = classify("tabular", "traditional_ml")
    assert "boosted trees" in rec.approach
    assert rec.fit == "good" and rec.caution == ""


def test_a_poor_fit_is_called_out():
    rec = classify("tabular", "llm_prompting")
    assert rec.fit == "poor"
    assert "poor fit" in rec.caution


@pytest.mark.parametrize("data_type", DATA_TYPES)
@pytest.mark.parametrize("layer", LAYERS)
def test_every_combination_gets_first_steps_starting_with_the_metric(data_type, layer):
    rec = classify(data_type, layer)
    assert len(rec.first_steps) >= 3
    assert "metric" in rec.first_steps[0]


def test_unknown_data_type_is_refused():
    with pytest.raises(ValueError, match="data type"):
        classify("video", "deep_learning")


BIG = {"train_size": 50_000, "train_dev_size": 20_000, "dev_size": 20_000, "test_size": 20_000}
READY = Measurements(
    human=0.01, train=0.012, train_dev=0.013, dev=0.014, test=0.0145, target=0.02, **BIG
)


def production(m, **kwargs):
    return gates_for("production", GateInputs(diagnosis=diagnose(m), **kwargs))


def failing(checks):
    return [c.id for c in checks if not c.passed]


def test_a_ready_project_passes_every_production_gate():
    assert failing(production(READY)) == []


def test_target_met_only_on_a_large_enough_dev_set():
    small = Measurements(**{**READY.__dict__, "dev_size": 200, "test_size": 200})
    checks = production(small)
    assert "gate.target_met" in failing(checks)
    assert "could be as high as" in next(c.detail for c in checks if c.id == "gate.target_met")


def test_missing_test_error_or_dev_overfitting_blocks_production():
    no_test = Measurements(**{**READY.__dict__, "test": None})
    overfit = Measurements(**{**READY.__dict__, "test": 0.05})
    assert failing(production(no_test)) == ["gate.test_confirms"]
    assert failing(production(overfit)) == ["gate.test_confirms"]


def test_llm_products_need_a_cost_model_and_data_work_must_be_closed():
    checks = production(READY, layer="llm_prompting", open_data_quality=1)
    assert failing(checks) == ["gate.no_open_data_quality", "gate.cost_known"]
    assert can_enter(
        "production",
        GateInputs(diagnosis=diagnose(READY), layer="llm_prompting", has_cost_model=True),
    )


def test_moving_from_prototype_to_production_checks_the_stages_in_between():
    checks = gates_between("prototype", "production", GateInputs(diagnosis=diagnose(READY)))
    ids = [c.id for c in checks]
    assert (
        ids.index("gate.run_logged")
        < ids.index("gate.diagnosis_decided")
        < ids.index("gate.target_met")
    )
    assert "gate.split_sizes" in failing(checks)
