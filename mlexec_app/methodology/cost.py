"""Cost curve: when does a fine-tuned small model become cheaper than an LLM API?

The API costs ``price x tokens`` per call (or what the product's traffic measured per call).
The small model costs a one-off fine-tuning bill, hosting paid per serving instance per
month (one instance serves a limited number of calls a month, so hosting grows in steps with
volume) and a marginal cost per call (serving is not free: GPU time, energy, egress). The
break-even volume is the lowest monthly volume from which the small model is cheaper to run
at every higher volume; payback is how many months of savings repay the fine-tuning.

:class:`Traffic` is what a site measured of one agent's calls (docs/mlexec/cost.md): the
curve can take its volume, tokens and API cost per call in place of typed-in figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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
    small_model_cost_per_call: float = 0.0  # the small model's marginal cost of one call
    # What the API cost per call as measured on real traffic; None: price x tokens.
    measured_api_cost_per_call: float | None = None

    def validate(self) -> None:
        for name in (
            "llm_price_per_token",
            "tokens_per_call",
            "calls_per_month",
            "fine_tune_cost",
            "hosting_cost_per_month",
            "small_model_cost_per_call",
        ):
            if getattr(self, name) < 0:
                raise CostInputError(f"{name} must not be negative.")
        if self.throughput_per_second is not None and self.throughput_per_second <= 0:
            raise CostInputError("throughput_per_second must be positive (or left out).")
        measured = self.measured_api_cost_per_call
        if measured is not None and not (math.isfinite(measured) and measured >= 0):
            raise CostInputError("measured_api_cost_per_call must be a non-negative number.")

    @property
    def api_cost_per_call(self) -> float:
        if self.measured_api_cost_per_call is not None:
            return self.measured_api_cost_per_call
        return self.llm_price_per_token * self.tokens_per_call

    @property
    def saving_per_call(self) -> float:
        """What one call saves on the small model before hosting (negative: it costs more)."""
        return self.api_cost_per_call - self.small_model_cost_per_call

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
    """(API cost, small-model cost: hosting plus marginal cost) for ``calls`` a month."""
    hosting = instances_needed(inputs, calls) * inputs.hosting_cost_per_month
    return calls * inputs.api_cost_per_call, hosting + calls * inputs.small_model_cost_per_call


def savings_at(inputs: CostInputs, calls: float) -> float:
    """API cost minus small-model cost at ``calls`` a month (positive: the small model wins)."""
    api, small = monthly_costs(inputs, calls)
    return api - small


def payback_months(inputs: CostInputs, calls: float) -> float | None:
    """Months of savings at ``calls`` a month that repay the fine-tuning (None: no savings)."""
    savings = savings_at(inputs, calls)
    return inputs.fine_tune_cost / savings if savings > 0 else None


def break_even(inputs: CostInputs) -> float | None:
    """Lowest monthly volume from which the small model stays cheaper, or ``None``.

    With a saving per call ``d`` (API cost minus the small model's marginal cost), hosting
    ``H`` per instance and capacity ``C``, each new instance costs ``H`` but its first call
    saves only ``d``; savings at the start of the k-th extra instance are ``k (dC - H) - H``.
    They stay non-negative from the first k with ``k (dC - H) >= H``, and inside the instance
    before it the cross-over is ``k H / d``. No break-even when ``d <= 0``: a small model that
    costs at least as much per call as the API never catches up.
    """
    d, h, c = inputs.saving_per_call, inputs.hosting_cost_per_month, inputs.capacity_per_instance
    if d <= 0:
        return None
    if h == 0:
        return 0.0
    if d * c <= h:
        return None  # even a fully used instance costs more than the API calls it replaces
    k = 1 if math.isinf(c) else max(1, math.ceil(h / (d * c - h)))
    return k * h / d


def cost_curve(inputs: CostInputs) -> CostResult:
    """Savings at the current volume, the break-even volume and the payback time.

    Raises :class:`CostInputError` when a figure is past a float's range: a price of 1e308
    a token, or a saving of 1e-300 a call to repay a fine-tuning with, has no finite answer.
    """
    inputs.validate()
    api, small = monthly_costs(inputs, inputs.calls_per_month)
    result = CostResult(
        api_cost_per_month=api,
        instances=instances_needed(inputs, inputs.calls_per_month),
        small_model_cost_per_month=small,
        savings_per_month=api - small,
        break_even_calls_per_month=break_even(inputs),
        payback_months=payback_months(inputs, inputs.calls_per_month),
    )
    for name, value in vars(result).items():
        if value is not None and not math.isfinite(value):
            raise CostInputError(
                f"{name} is past any number this curve can give: check the figures' units."
            )
    return result


def curve_points(inputs: CostInputs, volumes: list[float]) -> list[tuple[float, float, float]]:
    """(volume, API cost, small-model cost) at each volume, for plotting."""
    return [(v, *monthly_costs(inputs, v)) for v in volumes]


# --- measured traffic --------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """One agent's traffic as the site measured it (what a ``TRAFFIC_SOURCE`` returns).

    Every figure but the volume may be unknown (``None``): usage that did not report tokens
    or a cost leaves the typed-in figure in its place.
    """

    calls_per_month: float
    mean_input_tokens: float | None = None
    mean_output_tokens: float | None = None
    api_cost_per_call: float | None = None  # the mean measured cost of one call
    rated_conversations: int | None = None  # what a dataset export would yield today

    def validate(self) -> None:
        for name in (
            "calls_per_month",
            "mean_input_tokens",
            "mean_output_tokens",
            "api_cost_per_call",
            "rated_conversations",
        ):
            value = getattr(self, name)
            if value is None and name != "calls_per_month":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise CostInputError(f"traffic {name} must be a non-negative number.")

    @property
    def tokens_per_call(self) -> float | None:
        """Mean input plus output tokens of a call (None when neither was reported)."""
        parts = [t for t in (self.mean_input_tokens, self.mean_output_tokens) if t is not None]
        return sum(parts) if parts else None


def with_traffic(inputs: CostInputs, traffic: Traffic) -> CostInputs:
    """The inputs with the measured volume, tokens and API cost per call in place of the
    typed-in ones (a figure the traffic does not know keeps its typed-in value)."""
    traffic.validate()
    tokens = traffic.tokens_per_call
    return replace(
        inputs,
        calls_per_month=traffic.calls_per_month,
        tokens_per_call=inputs.tokens_per_call if tokens is None else tokens,
        measured_api_cost_per_call=traffic.api_cost_per_call,
    )
