"""The small model's marginal cost per call, and measured traffic in place of typed figures."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mlexec_app.methodology.cost import (
    CostInputError,
    CostInputs,
    Traffic,
    break_even,
    cost_curve,
    monthly_costs,
    payback_months,
    savings_at,
    with_traffic,
)
from mlexec_app.methodology.gates import GateInputs, gates_for

pytestmark = pytest.mark.engine_independent

# One cent a call (1,000 tokens at $10 per million); $1,000 a month per serving instance.
BASE = {
    "llm_price_per_token": 1e-5,
    "tokens_per_call": 1000,
    "fine_tune_cost": 18_000,
    "hosting_cost_per_month": 1000,
}

PRICES = st.floats(1e-8, 1e-3)
TOKENS = st.floats(1, 100_000)
HOSTING = st.floats(0, 1e6)
THROUGHPUT = st.none() | st.floats(1e-3, 1e3)
VOLUME = st.floats(0, 1e10)


def test_a_marginal_cost_moves_break_even_and_shrinks_savings():
    # Serving costs a fifth of a cent a call: each call saves 0.8 cents, not one.
    inputs = CostInputs(calls_per_month=1_000_000, small_model_cost_per_call=0.002, **BASE)
    result = cost_curve(inputs)
    assert result.break_even_calls_per_month == pytest.approx(125_000)  # was 100,000
    assert result.small_model_cost_per_month == pytest.approx(1000 + 2000)
    assert result.savings_per_month == pytest.approx(7000)
    assert result.payback_months == pytest.approx(18_000 / 7000)
    assert savings_at(inputs, 125_000) == pytest.approx(0, abs=1e-6)
    assert payback_months(inputs, 100_000) is None


def test_a_small_model_dearer_per_call_than_the_api_never_wins_even_if_hosting_is_free():
    inputs = CostInputs(
        calls_per_month=1e9, small_model_cost_per_call=0.01, **{**BASE, "hosting_cost_per_month": 0}
    )
    assert break_even(inputs) is None
    assert cost_curve(inputs).payback_months is None


def test_a_negative_marginal_cost_is_refused():
    with pytest.raises(CostInputError, match="small_model_cost_per_call"):
        cost_curve(CostInputs(calls_per_month=1, small_model_cost_per_call=-0.1, **BASE))


def test_measured_traffic_replaces_volume_tokens_and_api_cost():
    typed = CostInputs(calls_per_month=10, **BASE)
    traffic = Traffic(
        calls_per_month=400_000, mean_input_tokens=700, mean_output_tokens=100,
        api_cost_per_call=0.02, rated_conversations=3,
    )  # fmt: skip
    used = with_traffic(typed, traffic)
    assert (used.calls_per_month, used.tokens_per_call) == (400_000, 800)
    assert used.api_cost_per_call == 0.02  # measured, not price x tokens (0.008)
    assert cost_curve(used).savings_per_month == pytest.approx(400_000 * 0.02 - 1000)


def test_traffic_without_a_cost_prices_the_measured_tokens_at_the_typed_price():
    typed = CostInputs(calls_per_month=10, **BASE)
    used = with_traffic(typed, Traffic(calls_per_month=50, mean_input_tokens=300))
    assert used.api_cost_per_call == pytest.approx(1e-5 * 300)
    assert with_traffic(typed, Traffic(calls_per_month=50)).tokens_per_call == 1000


@pytest.mark.parametrize(
    "bad",
    [
        {"calls_per_month": -1},
        {"calls_per_month": math.nan},
        {"calls_per_month": 5, "api_cost_per_call": math.inf},
        {"calls_per_month": 5, "mean_input_tokens": "800"},
        {"calls_per_month": True},
    ],
)
def test_nonsense_traffic_is_refused(bad):
    with pytest.raises(CostInputError, match="traffic"):
        with_traffic(CostInputs(calls_per_month=1, **BASE), Traffic(**bad))


@st.composite
def cheaper_per_call(draw):
    """Inputs whose small model costs less per call than the API."""
    price, tokens = draw(PRICES), draw(TOKENS)
    api = price * tokens
    marginal = draw(st.floats(0, 0.999)) * api
    return CostInputs(
        price, tokens, 0, draw(st.floats(0, 1e6)), draw(HOSTING), draw(THROUGHPUT), marginal
    )


@given(cheaper_per_call(), VOLUME, VOLUME)
def test_more_volume_never_makes_the_small_model_relatively_worse(inputs, v1, v2):
    # With unlimited throughput, savings only grow with volume; with a capacity, the same holds
    # a whole number of instances later (hosting steps, so mid-instance dips are expected).
    low, high = sorted((v1, v2))
    unlimited = CostInputs(**{**inputs.__dict__, "throughput_per_second": None})
    assert savings_at(unlimited, high) >= savings_at(unlimited, low) - 1e-9 * max(1, high)
    capacity = inputs.capacity_per_instance
    assume(not math.isinf(capacity) and low + capacity < 1e12)
    if inputs.saving_per_call * capacity >= inputs.hosting_cost_per_month:
        later = savings_at(inputs, low + capacity)
        assert later >= savings_at(inputs, low) - 1e-9 * max(1, low + capacity)


@given(cheaper_per_call())
def test_break_even_is_where_the_two_totals_are_equal(inputs):
    volume = break_even(inputs)
    if volume is None:
        assert inputs.saving_per_call * inputs.capacity_per_instance <= (
            inputs.hosting_cost_per_month * (1 + 1e-9)
        )
        return
    api, small = monthly_costs(inputs, volume)
    assert api == pytest.approx(small, rel=1e-9, abs=1e-9)
    for beyond in (volume * (1 + 1e-6) + 1e-9, volume * 3 + 7):
        api, small = monthly_costs(inputs, beyond)
        assert small <= api * (1 + 1e-9)


@given(PRICES, TOKENS, HOSTING, THROUGHPUT, st.floats(1, 100), VOLUME)
def test_no_break_even_when_the_marginal_cost_reaches_the_apis(
    price, tokens, hosting, tput, factor, volume
):
    api = price * tokens
    inputs = CostInputs(price, tokens, volume, 1000, hosting, tput, api * factor)
    assert break_even(inputs) is None
    assert savings_at(inputs, volume) <= 1e-9 * max(1, volume * api)
    assert cost_curve(inputs).payback_months is None


@pytest.mark.parametrize(
    ("inputs", "outcome"),
    [
        ({}, None),  # off by default: the gate is not listed at all
        ({"require_measured_cost": True}, False),
        ({"require_measured_cost": True, "has_measured_cost": True}, True),
        ({"require_measured_cost": True, "layer": "deep_learning"}, True),  # no per-call bill
    ],
)
def test_the_measured_cost_gate_applies_only_when_required(inputs, outcome):
    fields = {"layer": "llm_prompting", "has_cost_model": True, **inputs}
    checks = {c.id: c for c in gates_for("production", GateInputs(**fields))}
    if outcome is None:
        assert "gate.cost_measured" not in checks and "gate.cost_known" in checks
    else:
        assert checks["gate.cost_measured"].passed is outcome
        assert bool(checks["gate.cost_measured"].detail) is not outcome


def test_the_example_in_docs_cost_md_runs():
    doc = Path(__file__).resolve().parents[3] / "docs" / "mlexec" / "cost.md"
    (example,) = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)[:1]
    exec(compile(example, str(doc), "exec"), {})  # its asserts are the figures the doc states
