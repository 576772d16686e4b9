"""Diagnose a project from its error rates: what is wrong, how sure we are, what dominates.

The four gaps of the CS230 method, each between two neighbouring measurements::

    human level --avoidable bias--> train --variance--> train-dev --data mismatch--> dev
    dev --dev-set overfitting--> test

Each gap gets a confidence interval from the split sizes and a verdict: ``present`` (it is
real and large enough to matter), ``absent`` (too small to matter, even at the top of its
interval) or ``inconclusive`` (the data cannot tell; the finding says how many examples would).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .metrics import Direction, to_error_or_none
from .registry import Registry, Rule
from .uncertainty import DEFAULT_CONFIDENCE, Interval, exact, gap, sample_size_for_gap, wilson

# A gap under half a percentage point is not worth an intervention.
DEFAULT_MATERIALITY = 0.005
# The dev set is where the goal is measured; below this many examples nothing is called.
DEFAULT_MIN_DEV_SIZE = 100


class Problem(enum.StrEnum):
    AVOIDABLE_BIAS = "avoidable_bias"
    VARIANCE = "variance"
    DATA_MISMATCH = "data_mismatch"
    DEV_OVERFITTING = "dev_overfitting"


class Verdict(enum.StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    INCONCLUSIVE = "inconclusive"


class Confidence(enum.StrEnum):
    """How firmly the dominant problem is named."""

    DECIDED = "decided"
    INCONCLUSIVE = "inconclusive"
    POINT_ESTIMATE = "point_estimate"  # split sizes unknown: no interval to judge by
    NO_PROBLEM = "no_problem"
    NOT_ENOUGH_DATA = "not_enough_data"  # train or dev error missing


@dataclass(frozen=True)
class Measurements:
    """Error rates (already normalised) and split sizes of one run, plus the project's bar."""

    train: float | None = None
    train_dev: float | None = None
    dev: float | None = None
    test: float | None = None
    human: float | None = None
    target: float | None = None
    train_size: int | None = None
    train_dev_size: int | None = None
    dev_size: int | None = None
    test_size: int | None = None

    @classmethod
    def from_metric(cls, direction: Direction, **values: float | int | None) -> Measurements:
        """Build from values in the project's metric units; sizes pass through unchanged."""
        converted: dict[str, float | int | None] = {}
        for name, value in values.items():
            if name.endswith("_size"):
                converted[name] = None if value is None else int(value)
            else:
                converted[name] = to_error_or_none(
                    None if value is None else float(value), direction
                )
        return cls(**converted)  # type: ignore[arg-type]

    @property
    def sizes_known(self) -> bool:
        return self.dev_size is not None


@dataclass(frozen=True)
class GapFinding:
    """One of the four gaps, with its interval and verdict."""

    problem: Problem
    upper_split: str
    lower_split: str
    interval: Interval
    verdict: Verdict
    needed_size: int | None = None

    @property
    def estimate(self) -> float:
        return self.interval.estimate


@dataclass(frozen=True)
class Finding:
    """What a diagnosis rule concluded, in words, with the figures behind it."""

    rule_id: str
    title: str
    message: str
    verdict: Verdict = Verdict.PRESENT
    problem: Problem | None = None


@dataclass(frozen=True)
class Diagnosis:
    measurements: Measurements
    gaps: dict[Problem, GapFinding]
    findings: list[Finding]
    dominant: Problem | None
    confidence: Confidence
    contenders: list[Problem] = field(default_factory=list)

    def present(self) -> list[Problem]:
        return [p for p, g in self.gaps.items() if g.verdict is Verdict.PRESENT]

    def fired(self) -> list[str]:
        return [f.rule_id for f in self.findings]


@dataclass(frozen=True)
class Settings:
    materiality: float = DEFAULT_MATERIALITY
    confidence: float = DEFAULT_CONFIDENCE
    min_dev_size: int = DEFAULT_MIN_DEV_SIZE


# --- gaps -------------------------------------------------------------------------------


def _verdict(interval: Interval, materiality: float, too_small: bool) -> Verdict:
    if too_small:
        return Verdict.INCONCLUSIVE
    if interval.high < materiality:
        return Verdict.ABSENT
    if interval.low > 0 and interval.estimate >= materiality:
        return Verdict.PRESENT
    return Verdict.INCONCLUSIVE


def _needed(high: Interval, low: Interval, both: bool, settings: Settings) -> int | None:
    difference = max(abs(high.estimate - low.estimate), settings.materiality)
    return sample_size_for_gap(low.estimate, difference, settings.confidence, both_sampled=both)


def _gap(
    problem: Problem,
    names: tuple[str, str],
    sides: tuple[Interval, Interval],
    too_small: bool,
    settings: Settings,
) -> GapFinding:
    high, low = sides
    interval = gap(high, low)
    verdict = _verdict(interval, settings.materiality, too_small)
    both = names[1] != "human"  # a stated human level carries no sampling error
    needed = _needed(high, low, both, settings) if verdict is Verdict.INCONCLUSIVE else None
    return GapFinding(problem, names[0], names[1], interval, verdict, needed)


def _small(m: Measurements, settings: Settings, *splits: str) -> bool:
    """A gap touching the dev set is never decided on a tiny dev set."""
    return "dev" in splits and m.dev_size is not None and m.dev_size < settings.min_dev_size


def compute_gaps(m: Measurements, settings: Settings) -> dict[Problem, GapFinding]:
    """Every gap that the measurements allow, in the order of the method."""
    c = settings.confidence
    ivs = {
        "train": m.train is not None and wilson(m.train, m.train_size, c),
        "train_dev": m.train_dev is not None and wilson(m.train_dev, m.train_dev_size, c),
        "dev": m.dev is not None and wilson(m.dev, m.dev_size, c),
        "test": m.test is not None and wilson(m.test, m.test_size, c),
        "human": exact(m.human if m.human is not None else 0.0),
    }
    pairs = [
        (Problem.AVOIDABLE_BIAS, "train", "human"),
        (Problem.VARIANCE, "train_dev" if m.train_dev is not None else "dev", "train"),
        (Problem.DATA_MISMATCH, "dev", "train_dev"),
        (Problem.DEV_OVERFITTING, "test", "dev"),
    ]
    gaps: dict[Problem, GapFinding] = {}
    for problem, upper, lower in pairs:
        a, b = ivs[upper], ivs[lower]
        if isinstance(a, Interval) and isinstance(b, Interval):
            small = _small(m, settings, upper, lower)
            gaps[problem] = _gap(problem, (upper, lower), (a, b), small, settings)
    return gaps


# --- the dominant problem -----------------------------------------------------------------


def _dominant(
    m: Measurements, gaps: dict[Problem, GapFinding], settings: Settings
) -> tuple[Problem | None, Confidence, list[Problem]]:
    # Overfitting the dev set is a measurement problem, not a model one: it never dominates.
    model_gaps = [g for p, g in gaps.items() if p is not Problem.DEV_OVERFITTING]
    if m.train is None or m.dev is None:
        return None, Confidence.NOT_ENOUGH_DATA, []
    live = [g for g in model_gaps if g.verdict is not Verdict.ABSENT]
    if not live:
        return None, Confidence.NO_PROBLEM, []
    leader = max(live, key=lambda g: g.estimate)
    contenders = [g.problem for g in live if g is leader or g.interval.high >= leader.interval.low]
    if not m.sizes_known:
        return leader.problem, Confidence.POINT_ESTIMATE, [leader.problem]
    decided = (
        leader.verdict is Verdict.PRESENT
        and contenders == [leader.problem]
        and not _small(m, settings, "dev")
    )
    confidence = Confidence.DECIDED if decided else Confidence.INCONCLUSIVE
    return leader.problem, confidence, contenders


# --- rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    measurements: Measurements
    gaps: dict[Problem, GapFinding]
    settings: Settings


class DiagnosisRule(Rule):
    """A rule that reads the measurements and gaps and may report one finding."""

    def evaluate(self, ctx: Context) -> Finding | None:
        raise NotImplementedError

    def finding(
        self, message: str, verdict: Verdict = Verdict.PRESENT, problem: Problem | None = None
    ) -> Finding:
        return Finding(self.id, self.title, message, verdict, problem)


DIAGNOSIS_RULES: Registry[DiagnosisRule] = Registry("diagnosis")


def pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def points(value: float) -> str:
    # Two decimals under one point, so a narrow interval does not print as "0.5 to 0.5".
    return f"{value * 100:.2f} points" if abs(value) < 0.01 else f"{value * 100:.1f} points"


SPLIT_NAMES = {"train": "train", "train_dev": "train-dev", "dev": "dev", "test": "test"}


def _describe_gap(g: GapFinding, what: str) -> str:
    iv = g.interval
    upper = SPLIT_NAMES.get(g.upper_split, g.upper_split)
    lower = SPLIT_NAMES.get(g.lower_split, g.lower_split + " level")
    text = f"{what}: {upper} error minus {lower} error is {points(iv.estimate)}"
    if iv.low != iv.high:
        text += f" (95% interval {points(iv.low)} to {points(iv.high)})"
    text += "."
    if g.verdict is Verdict.INCONCLUSIVE:
        text += " Inconclusive: the splits are too small to tell"
        text += f"; about {g.needed_size:,} examples per split would." if g.needed_size else "."
    return text


class GapRule(DiagnosisRule):
    problem: Problem
    what: str = ""
    advice: str = ""

    def evaluate(self, ctx: Context) -> Finding | None:
        g = ctx.gaps.get(self.problem)
        if g is None or g.verdict is Verdict.ABSENT:
            return None
        message = _describe_gap(g, self.what)
        if g.verdict is Verdict.PRESENT:
            message += " " + self.advice
        return self.finding(message, g.verdict, self.problem)


@DIAGNOSIS_RULES.register
class AvoidableBiasRule(GapRule):
    id = "diagnose.avoidable_bias"
    title = "Avoidable bias: training error is well above human level"
    problem = Problem.AVOIDABLE_BIAS
    what = "Avoidable bias"
    advice = "The model does not yet fit its own training data as well as it could."


@DIAGNOSIS_RULES.register
class VarianceRule(GapRule):
    id = "diagnose.variance"
    title = "Variance: the model does worse on unseen data from the training distribution"
    problem = Problem.VARIANCE
    what = "Variance"
    advice = "The model fits its training examples but does not generalise to new ones."


@DIAGNOSIS_RULES.register
class DataMismatchRule(GapRule):
    id = "diagnose.data_mismatch"
    title = "Data mismatch: the dev data differs from the training data"
    problem = Problem.DATA_MISMATCH
    what = "Data mismatch"
    advice = "The model generalises within its training distribution but the dev data differs."


@DIAGNOSIS_RULES.register
class DevOverfittingRule(GapRule):
    id = "diagnose.dev_overfitting"
    title = "Dev-set overfitting: test error is well above dev error"
    problem = Problem.DEV_OVERFITTING
    what = "Dev-set overfitting"
    advice = "Choices were tuned to the dev set; it no longer predicts test error. Enlarge it."


@DIAGNOSIS_RULES.register
class HumanLevelExceededRule(DiagnosisRule):
    id = "diagnose.human_level_exceeded"
    title = "Human level exceeded: the human figure no longer bounds Bayes error"
    # Once the model beats the human proxy, avoidable bias can't be measured against it and
    # the usual tools (human labels, human insight into errors) help less.

    def evaluate(self, ctx: Context) -> Finding | None:
        m = ctx.measurements
        best = min((e for e in (m.train, m.dev) if e is not None), default=None)
        if m.human is None or best is None or best >= m.human:
            return None
        return self.finding(
            f"Error {pct(best)} is below the human level {pct(m.human)}. Avoidable bias is now "
            "unknown: progress will be slower, and error analysis by people helps less."
        )


@DIAGNOSIS_RULES.register
class HumanLevelUnknownRule(DiagnosisRule):
    id = "diagnose.human_level_unknown"
    title = "No human level: avoidable bias is measured against 0% error"

    def evaluate(self, ctx: Context) -> Finding | None:
        if ctx.measurements.human is not None or ctx.measurements.train is None:
            return None
        return self.finding(
            "No human-level performance or other Bayes-error proxy is set, so avoidable bias is "
            "measured against a perfect 0% and may be overstated. Set one on the project.",
            Verdict.INCONCLUSIVE,
        )


@DIAGNOSIS_RULES.register
class NoTrainDevSplitRule(DiagnosisRule):
    id = "diagnose.no_train_dev_split"
    title = "No train-dev split: variance and data mismatch cannot be told apart"

    def evaluate(self, ctx: Context) -> Finding | None:
        m = ctx.measurements
        if m.train_dev is not None or m.train is None or m.dev is None:
            return None
        return self.finding(
            "Without a train-dev error, the dev-minus-train gap mixes variance and data "
            "mismatch. Hold out part of the training data as a train-dev split.",
            Verdict.INCONCLUSIVE,
        )


@DIAGNOSIS_RULES.register
class SmallDevSetRule(DiagnosisRule):
    id = "diagnose.small_dev_set"
    title = "Dev set too small to decide anything"

    def evaluate(self, ctx: Context) -> Finding | None:
        size = ctx.measurements.dev_size
        if size is None or size >= ctx.settings.min_dev_size:
            return None
        return self.finding(
            f"The dev set has {size} examples; below {ctx.settings.min_dev_size} no verdict is "
            "called. Grow it before drawing conclusions.",
            Verdict.INCONCLUSIVE,
        )


@DIAGNOSIS_RULES.register
class SizesUnknownRule(DiagnosisRule):
    id = "diagnose.sizes_unknown"
    title = "Split sizes unknown: verdicts are point estimates"

    def evaluate(self, ctx: Context) -> Finding | None:
        if ctx.measurements.sizes_known or ctx.measurements.dev is None:
            return None
        return self.finding(
            "Without the dev set's size there is no confidence interval; every verdict here is "
            "a point estimate. Record a data assessment with the split sizes.",
            Verdict.INCONCLUSIVE,
        )


@DIAGNOSIS_RULES.register
class TargetMetRule(DiagnosisRule):
    id = "diagnose.target_met"
    title = "Target met on the dev set"

    def evaluate(self, ctx: Context) -> Finding | None:
        m = ctx.measurements
        if m.target is None or m.dev is None or m.dev > m.target:
            return None
        high = wilson(m.dev, m.dev_size, ctx.settings.confidence).high
        verdict = Verdict.PRESENT if high <= m.target else Verdict.INCONCLUSIVE
        return self.finding(
            f"Dev error {pct(m.dev)} meets the target {pct(m.target)}"
            + ("." if verdict is Verdict.PRESENT else f", but its interval reaches {pct(high)}."),
            verdict,
        )


@DIAGNOSIS_RULES.register
class MissingMeasurementsRule(DiagnosisRule):
    id = "diagnose.missing_measurements"
    title = "Not enough measurements to diagnose"

    def evaluate(self, ctx: Context) -> Finding | None:
        m = ctx.measurements
        if m.train is not None and m.dev is not None:
            return None
        return self.finding(
            "A diagnosis needs at least the training and the dev error of a run.",
            Verdict.INCONCLUSIVE,
        )


def diagnose(m: Measurements, settings: Settings | None = None) -> Diagnosis:
    """Compute the gaps, run every diagnosis rule and name the dominant problem."""
    settings = settings or Settings()
    gaps = compute_gaps(m, settings)
    ctx = Context(m, gaps, settings)
    findings = [f for rule in DIAGNOSIS_RULES if (f := rule.evaluate(ctx)) is not None]
    dominant, confidence, contenders = _dominant(m, gaps, settings)
    return Diagnosis(m, gaps, findings, dominant, confidence, contenders)
