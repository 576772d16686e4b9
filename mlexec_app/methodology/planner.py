"""Prescribe interventions from a diagnosis, in the fixed priority order of the method.

Order: data quality, hyperparameters, architecture, fine-tune a pre-trained model, more
compute. Only interventions that the diagnosis justifies are proposed, each with the rule that
fired and its expected gain (an upper bound, in error-rate points). More compute comes last
and only once every justified earlier intervention has been tried: it is the most expensive
lever and hides problems the cheaper ones would have fixed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .diagnosis import DEFAULT_MATERIALITY, Confidence, Diagnosis, Problem, Verdict
from .error_analysis import CategoryCeiling
from .more_data import CANT_TELL, CurveReading
from .registry import Registry, Rule

# Below this share of correct labels, label noise is worth fixing before anything else.
LABEL_QUALITY_FLOOR = 0.98
UNSTRUCTURED = frozenset({"image", "audio", "text"})
LABEL_WORDS = ("label", "annotat")


class Kind(enum.StrEnum):
    """Intervention kinds, declared in priority order."""

    DATA_QUALITY = "data_quality"
    HYPERPARAMETERS = "hyperparameters"
    ARCHITECTURE = "architecture"
    FINE_TUNE = "fine_tune"
    MORE_COMPUTE = "more_compute"

    @property
    def priority(self) -> int:
        return list(Kind).index(self) + 1


class Status(enum.StrEnum):
    PROPOSED = "proposed"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    ABANDONED = "abandoned"

    @property
    def is_open(self) -> bool:
        return self in (Status.PROPOSED, Status.IN_PROGRESS)


class State(enum.StrEnum):
    NEW = "new"  # never proposed before
    OPEN = "open"  # proposed or in progress
    TRIED = "tried"  # done or abandoned


@dataclass(frozen=True)
class Past:
    """An intervention already on record."""

    rule_id: str
    status: Status


@dataclass(frozen=True)
class PlanInputs:
    diagnosis: Diagnosis
    data_type: str = "other"
    abstraction_layer: str = "deep_learning"
    label_quality: float | None = None
    categories: list[CategoryCeiling] = field(default_factory=list)
    history: list[Past] = field(default_factory=list)
    materiality: float = DEFAULT_MATERIALITY
    #: The latest learning curve's verdict on more data, if one was measured.
    learning_curve: CurveReading | None = None


@dataclass(frozen=True)
class Candidate:
    rule_id: str
    kind: Kind
    title: str
    rationale: str
    expected_gain: float | None = None
    problem: Problem | None = None
    state: State = State.NEW

    @property
    def priority(self) -> int:
        return self.kind.priority


@dataclass(frozen=True)
class Plan:
    recommended: list[Candidate]  # ranked: what to do, first things first
    tried: list[Candidate]  # justified, but done or abandoned already
    deferred: list[Candidate]  # justified, but waiting for earlier steps (more compute)
    deferred_reason: str = ""

    @property
    def next(self) -> Candidate | None:
        return self.recommended[0] if self.recommended else None


# --- rules ----------------------------------------------------------------------------------


class PlanRule(Rule):
    kind: Kind

    def propose(self, inputs: PlanInputs) -> Candidate | None:
        raise NotImplementedError

    def candidate(
        self, rationale: str, gain: float | None = None, problem: Problem | None = None
    ) -> Candidate:
        return Candidate(self.id, self.kind, self.title, rationale, gain, problem)


PLAN_RULES: Registry[PlanRule] = Registry("planner")


def _present(inputs: PlanInputs, problem: Problem) -> float | None:
    """The gap's estimate when the diagnosis found the problem present, else ``None``."""
    g = inputs.diagnosis.gaps.get(problem)
    return g.estimate if g is not None and g.verdict is Verdict.PRESENT else None


def _is_label_category(name: str) -> bool:
    return any(word in name.lower() for word in LABEL_WORDS)


class GapPlanRule(PlanRule):
    """Proposes when one gap is present; the expected gain is that gap."""

    problem: Problem
    because: str = ""

    def propose(self, inputs: PlanInputs) -> Candidate | None:
        size = _present(inputs, self.problem)
        if size is None:
            return None
        return self.candidate(f"{self.because} ({size * 100:.1f} points).", size, self.problem)


@PLAN_RULES.register
class GrowDevSetRule(PlanRule):
    id = "plan.data_quality.grow_dev_set"
    kind = Kind.DATA_QUALITY
    title = "Grow the dev (and test) set"

    def propose(self, inputs: PlanInputs) -> Candidate | None:
        d = inputs.diagnosis
        if _present(inputs, Problem.DEV_OVERFITTING) is not None:
            return self.candidate("Test error is well above dev error: the dev set was overfit.")
        if d.confidence is Confidence.INCONCLUSIVE:
            sizes = [g.needed_size for g in d.gaps.values() if g.needed_size]
            need = f" About {max(sizes):,} examples per split would decide it." if sizes else ""
            return self.candidate("The diagnosis is inconclusive on splits this small." + need)
        return None


@PLAN_RULES.register
class FixLabelsRule(PlanRule):
    id = "plan.data_quality.fix_labels"
    kind = Kind.DATA_QUALITY
    title = "Fix label errors"

    def propose(self, inputs: PlanInputs) -> Candidate | None:
        labels = [c for c in inputs.categories if _is_label_category(c.category)]
        gain = max((c.ceiling for c in labels), default=None)
        if gain is not None and gain >= inputs.materiality:
            return self.candidate(
                f"Error analysis puts {gain * 100:.1f} points of dev error on bad labels.", gain
            )
        quality = inputs.label_quality
        if quality is not None and quality < LABEL_QUALITY_FLOOR:
            return self.candidate(
                f"Estimated label quality is {quality:.0%}, under {LABEL_QUALITY_FLOOR:.0%}."
            )
        return None


@PLAN_RULES.register
class MatchDistributionsRule(GapPlanRule):
    id = "plan.data_quality.match_distributions"
    kind = Kind.DATA_QUALITY
    title = "Make the training data more like the dev data (collect, synthesise, reweight)"
    problem = Problem.DATA_MISMATCH
    because = "Data mismatch is present"


@PLAN_RULES.register
class TopCategoryRule(PlanRule):
    id = "plan.data_quality.top_error_category"
    kind = Kind.DATA_QUALITY
    title = "Work on the largest error category"

    def propose(self, inputs: PlanInputs) -> Candidate | None:
        others = [c for c in inputs.categories if not _is_label_category(c.category)]
        top = max(others, key=lambda c: c.ceiling, default=None)
        if top is None or top.ceiling < inputs.materiality:
            return None
        return Candidate(
            self.id,
            self.kind,
            f"Work on the largest error category: {top.category}",
            f"{top.category!r} is {top.share.estimate:.0%} of sampled dev errors: fixing it "
            f"could gain up to {top.ceiling * 100:.1f} points.",
            top.ceiling,
        )


@PLAN_RULES.register
class MoreTrainingDataRule(PlanRule):
    """More data when the learning curve says it helps; never when it says it won't.

    Without a curve, variance is the reason (as the method has it). With one, the curve
    decides: "will help" proposes it with the curve's gain, "won't help" and "target already
    met" never do, and "can't tell yet" leaves it to the variance gap, saying the curve could
    not tell.
    """

    id = "plan.data_quality.more_training_data"
    kind = Kind.DATA_QUALITY
    title = "Add training data or augment it"

    def propose(self, inputs: PlanInputs) -> Candidate | None:
        curve = inputs.learning_curve
        variance = _present(inputs, Problem.VARIANCE)
        if curve is not None and curve.supports_more_data:
            return self.candidate(f"Learning curve: {curve.reason}", curve.gain, Problem.VARIANCE)
        if curve is not None and curve.rules_out_more_data:
            return None
        if variance is None:
            return None
        rationale = f"Variance is present ({variance * 100:.1f} points)."
        if curve is not None and curve.verdict == CANT_TELL:
            rationale += f" The learning curve can't tell yet what more data buys: {curve.reason}"
        return self.candidate(rationale, variance, Problem.VARIANCE)


@PLAN_RULES.register
class FitBetterRule(GapPlanRule):
    id = "plan.hyperparameters.fit_better"
    kind = Kind.HYPERPARAMETERS
    title = "Tune to fit the training set better (learning rate, optimiser, less regularisation)"
    problem = Problem.AVOIDABLE_BIAS
    because = "Avoidable bias is present"


@PLAN_RULES.register
class RegulariseRule(GapPlanRule):
    id = "plan.hyperparameters.regularise"
    kind = Kind.HYPERPARAMETERS
    title = "Regularise (weight decay, dropout, early stopping)"
    problem = Problem.VARIANCE
    because = "Variance is present"


@PLAN_RULES.register
class BiggerArchitectureRule(GapPlanRule):
    id = "plan.architecture.bias"
    kind = Kind.ARCHITECTURE
    title = "Try a larger or better-suited architecture"
    problem = Problem.AVOIDABLE_BIAS
    because = "Avoidable bias is present"


@PLAN_RULES.register
class FineTuneRule(PlanRule):
    id = "plan.fine_tune.pretrained"
    kind = Kind.FINE_TUNE
    title = "Fine-tune a pre-trained model"

    def propose(self, inputs: PlanInputs) -> Candidate | None:
        unstructured = inputs.data_type in UNSTRUCTURED
        if not unstructured and inputs.abstraction_layer != "llm_prompting":
            return None
        gaps = [
            (p, g)
            for p in (Problem.AVOIDABLE_BIAS, Problem.VARIANCE)
            if (g := _present(inputs, p)) is not None
        ]
        if not gaps:
            return None
        problem, size = max(gaps, key=lambda pg: pg[1])
        return self.candidate(
            f"{problem.value.replace('_', ' ').capitalize()} is present on {inputs.data_type} "
            "data, where pre-trained models carry what small datasets cannot teach.",
            size,
            problem,
        )


@PLAN_RULES.register
class MoreComputeRule(GapPlanRule):
    id = "plan.more_compute.scale_up"
    kind = Kind.MORE_COMPUTE
    title = "More compute: a bigger model, trained longer"
    problem = Problem.AVOIDABLE_BIAS
    because = "Avoidable bias is present and every cheaper justified step has been tried"


# --- assembling the plan ----------------------------------------------------------------------


def _state(rule_id: str, history: list[Past]) -> State:
    statuses = [p.status for p in history if p.rule_id == rule_id]
    if any(s.is_open for s in statuses):
        return State.OPEN
    return State.TRIED if statuses else State.NEW


def _rank(c: Candidate) -> tuple[int, float, str]:
    gain = c.expected_gain if c.expected_gain is not None else -1.0
    return (c.priority, -gain, c.rule_id)


def candidates(inputs: PlanInputs) -> list[Candidate]:
    """Every justified candidate, with its state from the history, in priority order."""
    found = [c for rule in PLAN_RULES if (c := rule.propose(inputs)) is not None]
    with_state = [
        Candidate(
            c.rule_id,
            c.kind,
            c.title,
            c.rationale,
            c.expected_gain,
            c.problem,
            _state(c.rule_id, inputs.history),
        )
        for c in found
    ]
    return sorted(with_state, key=_rank)


def plan(inputs: PlanInputs) -> Plan:
    """Rank the justified interventions; hold back more compute until the rest are tried."""
    ranked = candidates(inputs)
    tried = [c for c in ranked if c.state is State.TRIED]
    todo = [c for c in ranked if c.state is not State.TRIED]
    earlier_open = [c for c in todo if c.kind is not Kind.MORE_COMPUTE]
    if not earlier_open:
        return Plan(todo, tried, [])
    deferred = [c for c in todo if c.kind is Kind.MORE_COMPUTE]
    reason = (
        f"Waiting for {len(earlier_open)} earlier intervention(s) to be tried: "
        + ", ".join(c.rule_id for c in earlier_open)
        if deferred
        else ""
    )
    return Plan(earlier_open, tried, deferred, reason)
