"""Cost curve: when does a fine-tuned small model become cheaper than an LLM API?

The API costs ``price x tokens`` per call. The small model costs a one-off fine-tuning bill
plus hosting, paid per serving instance per month; one instance serves a limited number of
calls a month, so hosting grows in steps with volume. The break-even volume is the lowest
monthly volume from which the small model is cheaper to run at every higher volume;
payback is how many months of savings repay the fine-tuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SECONDS_PER_MONTH = 30 * 24 * 3600


class CostInputError(ValueError):
    """An input to the cost curve is out of range."""


@dataclass(frozen=True)
class CostInputs:
    llm_price_per_token: float
    tokens_per_call: float
    calls_per_month: float
    fine_tune_cost: float
    hosting_cost_per_month: float  # per serving instance
    throughput_per_second: float | None = None  # per instance; None: one instance suffices

    def validate(self) -> None:
        for name in (
            "llm_price_per_token",
            "tokens_per_call",
            "calls_per_month",
            "fine_tune_cost",
            "hosting_cost_per_month",
        ):
            if getattr(self, name) < 0:
                raise CostInputError(f"{name} must not be negative.")
        if self.throughput_per_second is not None and self.throughput_per_second <= 0:
            raise CostInputError("throughput_per_second must be positive (or left out).")

    @property
    def api_cost_per_call(self) -> float:
        return self.llm_price_per_token * self.tokens_per_call

    @property
    def capacity_per_instance(self) -> float:
        """Calls one instance serves in a month (infinite without a throughput)."""
        if self.throughput_per_second is None:
            return math.inf
        return self.throughput_per_second * SECONDS_PER_MONTH


@dataclass(frozen=True)
class CostResult:
    api_cost_per_month: float
    instances: int
    small_model_cost_per_month: float
    savings_per_month: float  # positive: the small model is cheaper at the current volume
    break_even_calls_per_month: float | None  # None: the small model never wins
    payback_months: float | None  # None: no savings to repay the fine-tuning with


def instances_needed(inputs: CostInputs, calls: float) -> int:
    """Serving instances for ``calls`` a month (at least one)."""
    capacity = inputs.capacity_per_instance
    return 1 if math.isinf(capacity) else max(1, math.ceil(calls / capacity))


def monthly_costs(inputs: CostInputs, calls: float) -> tuple[float, float]:
    """(API cost, small-model hosting cost) for ``calls`` a month."""
    hosting = instances_needed(inputs, calls) * inputs.hosting_cost_per_month
    return calls * inputs.api_cost_per_call, hosting


def break_even(inputs: CostInputs) -> float | None:
    """Lowest monthly volume from which the small model stays cheaper, or ``None``.

    With per-call API cost ``a``, hosting ``H`` per instance and capacity ``C``, each new
    instance costs ``H`` but its first call saves only ``a``; savings at the start of the
    k-th extra instance are ``k (aC - H) - H``. They stay non-negative from the first k with
    ``k (aC - H) >= H``, and inside the instance before it the cross-over is ``k H / a``.
    """
    a, h, c = inputs.api_cost_per_call, inputs.hosting_cost_per_month, inputs.capacity_per_instance
    if h == 0:
        return 0.0
    if a <= 0 or a * c <= h:
        return None  # even a fully used instance costs more than the API calls it replaces
    k = 1 if math.isinf(c) else max(1, math.ceil(h / (a * c - h)))
    return k * h / a


def cost_curve(inputs: CostInputs) -> CostResult:
    """Savings at the current volume, the break-even volume and the payback time."""
    inputs.validate()
    api, hosting = monthly_costs(inputs, inputs.calls_per_month)
    savings = api - hosting
    payback = inputs.fine_tune_cost / savings if savings > 0 else None
    return CostResult(
        api_cost_per_month=api,
        instances=instances_needed(inputs, inputs.calls_per_month),
        small_model_cost_per_month=hosting,
        savings_per_month=savings,
        break_even_calls_per_month=break_even(inputs),
        payback_months=payback,
    )


def curve_points(inputs: CostInputs, volumes: list[float]) -> list[tuple[float, float, float]]:
    """(volume, API cost, small-model cost) at each volume, for plotting."""
    return [(v, *monthly_costs(inputs, v)) for v in volumes]
