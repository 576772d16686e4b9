"""What a learning curve says about more data: its verdicts, and the reading the plan uses.

The diagnostics measure the curve and pick a verdict (``mlexec_app.diagnostics.learning_curve``);
the planner reads it here, so the words of both come from one place and cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WILL_HELP = "more data will help"
WONT_HELP = "more data won't help"
CANT_TELL = "can't tell yet"
NOT_NEEDED = "target already met"
VERDICTS = (WILL_HELP, WONT_HELP, CANT_TELL, NOT_NEEDED)

# The cases behind the verdicts.
TARGET_MET = "target_met"  # not needed
REACHES_TARGET = "reaches_target"  # will help: the target at a practical size
BEYOND_PRACTICAL = "beyond_practical"  # will help, but the target needs an impractical multiple
HELPS = "helps"  # will help (no target)
FLAT_BIAS = "flat_bias"  # won't help: the model does not fit its own training data
FLAT_FLOOR = "flat_floor"  # won't help: an error floor (label noise, uninformative inputs)
UNCERTAIN = "uncertain"  # can't tell yet
TOO_FEW_SIZES = "too_few_sizes"  # can't tell: nothing to extrapolate from
CASES = {
    WILL_HELP: (REACHES_TARGET, BEYOND_PRACTICAL, HELPS),
    WONT_HELP: (FLAT_BIAS, FLAT_FLOOR),
    CANT_TELL: (UNCERTAIN, TOO_FEW_SIZES),
    NOT_NEEDED: (TARGET_MET,),
}


@dataclass(frozen=True)
class CurveReading:
    """A learning curve's verdict as the planner reads it."""

    verdict: str
    case: str
    reason: str
    #: What ten times today's data gains (error-rate points), when the curve could say.
    gain: float | None = None

    @property
    def supports_more_data(self) -> bool:
        return self.verdict == WILL_HELP

    @property
    def rules_out_more_data(self) -> bool:
        return self.verdict in (WONT_HELP, NOT_NEEDED)

    @classmethod
    def from_report(cls, curve: Mapping[str, Any] | None) -> CurveReading | None:
        """From a stored report's ``learning_curve`` section; None if it has no known verdict."""
        if not isinstance(curve, Mapping) or curve.get("verdict") not in VERDICTS:
            return None
        gain = curve.get("gain")
        value = gain.get("value") if isinstance(gain, Mapping) else None
        return cls(
            verdict=str(curve["verdict"]),
            case=str(curve.get("case") or ""),
            reason=str(curve.get("reason") or ""),
            gain=float(value) if isinstance(value, int | float) else None,
        )
