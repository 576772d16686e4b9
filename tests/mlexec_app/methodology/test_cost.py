"""Cost curve: LLM API against a fine-tuned small model."""

from __future__ import annotations

import pytest

from mlexec_app.methodology.cost import (
    SECONDS_PER_MONTH,
    CostInputError,
    CostInputs,
    cost_curve,
    monthly_costs,
)

pytestmark = pytest.mark.engine_independent

# One cent a call (1,000 tokens at $10 per million); $1,000 a month per serving instance.
BASE = {
    "llm_price_per_token": 1e-5,
    "tokens_per_call": 1000,
    "fine_tune_cost": 18_000,
    "hosting_cost_per_month": 1000,
}


def test_break_even_savings_and_payback_without_a_throughput_limit():
    result = cost_curve(CostInputs(calls_per_month=1_000_000, **BASE))
    assert result.break_even_calls_per_month == pytest.approx(100_000)
    assert result.api_cost_per_month == pytest.approx(10_000)
    assert result.savings_per_month == pytest.approx(9_000)
    assert result.payback_months == pytest.approx(2.0)


def test_below_break_even_the_api_is_cheaper_and_nothing_pays_back():
    result = cost_curve(CostInputs(calls_per_month=50_000, **BASE))
    assert result.savings_per_month == pytest.approx(-500)
    assert result.payback_months is None


def test_throughput_limit_adds_instances_and_moves_break_even():
    # 0.05 calls/s is 129,600 calls a month per instance; a full instance saves only $296,
    # so the small model wins for good only from the fourth instance's break-even.
    inputs = CostInputs(calls_per_month=500_000, throughput_per_second=0.05, **BASE)
    result = cost_curve(inputs)
    assert result.instances == 4
    assert result.break_even_calls_per_month == pytest.approx(400_000)
    just_after_third = 3 * 0.05 * SECONDS_PER_MONTH + 1
    api, hosting = monthly_costs(inputs, just_after_third)
    assert api < hosting  # cheaper before, dearer again here: why break-even is not 100,000


def test_small_model_that_never_wins():
    inputs = CostInputs(calls_per_month=10_000_000, throughput_per_second=0.001, **BASE)
    result = cost_curve(inputs)
    assert result.break_even_calls_per_month is None
    assert result.savings_per_month < 0


@pytest.mark.parametrize("field", ["llm_price_per_token", "calls_per_month", "fine_tune_cost"])
def test_negative_inputs_are_refused(field):
    values = {**BASE, "calls_per_month": 1000, field: -1}
    with pytest.raises(CostInputError, match=field):
        cost_curve(CostInputs(**values))


def test_zero_throughput_is_refused():
    with pytest.raises(CostInputError, match="throughput"):
        cost_curve(CostInputs(calls_per_month=1, throughput_per_second=0, **BASE))
