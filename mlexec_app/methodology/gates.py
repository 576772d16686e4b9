"""Stage gates: what must hold before a project moves to its next stage.

Stages: scoping -> prototype -> diagnose -> iterate -> production. Each gate is a rule with
an id; a move is allowed when every gate of the target stage passes. Production is the gate
that matters most: the target is met on a dev set large enough to say so, the test set
confirms it, and the running cost is known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .diagnosis import Confidence, Diagnosis, Problem, Verdict
from .uncertainty import wilson

STAGES = ("scoping", "prototype", "diagnose", "iterate", "production")


@dataclass(frozen=True)
class GateInputs:
    has_problem_statement: bool = False
    has_target: bool = False
    has_human_level: bool = False
    has_split_sizes: bool = False
    diagnosis: Diagnosis | None = None
    open_data_quality: int = 0  # open interventions of the data-quality kind
    layer: str = "deep_learning"
    has_cost_model: bool = False
    require_measured_cost: bool = False  # gate.cost_measured applies (off by default)
    has_measured_cost: bool = False  # the cost curve was computed from measured traffic


@dataclass(frozen=True)
class GateCheck:
    id: str
    title: str
    passed: bool
    detail: str = ""


Check = Callable[[GateInputs], tuple[bool, str]]


def _has_run(g: GateInputs) -> tuple[bool, str]:
    m = g.diagnosis.measurements if g.diagnosis else None
    ok = m is not None and m.train is not None and m.dev is not None
    return ok, "" if ok else "Log a run with its training and dev error."


def _decided(g: GateInputs) -> tuple[bool, str]:
    d = g.diagnosis
    ok = d is not None and d.confidence in (Confidence.DECIDED, Confidence.NO_PROBLEM)
    return ok, "" if ok else "The diagnosis must name its dominant problem with confidence."


def _target_met(g: GateInputs) -> tuple[bool, str]:
    m = g.diagnosis.measurements if g.diagnosis else None
    if m is None or m.dev is None or m.target is None or m.dev_size is None:
        return False, "Needs a target, a dev error and the dev set's size."
    high = wilson(m.dev, m.dev_size).high
    ok = high <= m.target
    return (
        ok,
        "" if ok else f"Dev error could be as high as {high:.1%}; the target is {m.target:.1%}.",
    )


def _test_confirms(g: GateInputs) -> tuple[bool, str]:
    d = g.diagnosis
    if d is None or d.measurements.test is None:
        return False, "Measure the test error."
    overfit = d.gaps.get(Problem.DEV_OVERFITTING)
    ok = overfit is not None and overfit.verdict is Verdict.ABSENT
    return ok, "" if ok else "The test error must show no dev-set overfitting."


def _flag(attribute: str, hint: str) -> Check:
    def check(g: GateInputs) -> tuple[bool, str]:
        ok = bool(getattr(g, attribute))
        return ok, "" if ok else hint

    return check


def _no_open_data_work(g: GateInputs) -> tuple[bool, str]:
    ok = g.open_data_quality == 0
    return ok, "" if ok else f"{g.open_data_quality} data-quality intervention(s) still open."


def _cost_known(g: GateInputs) -> tuple[bool, str]:
    # Only an LLM-backed product has a per-call bill that can sink it at volume.
    ok = g.layer != "llm_prompting" or g.has_cost_model
    return ok, "" if ok else "Fill in the cost model: API cost against a fine-tuned small model."


def _cost_measured(g: GateInputs) -> tuple[bool, str]:
    ok = g.layer != "llm_prompting" or g.has_measured_cost
    return ok, "" if ok else (
        "Name the project's agent and give it a cost model: the cost curve must be computed "
        "from the traffic the site measured, not typed-in figures."
    )


GATES: dict[str, list[tuple[str, str, Check]]] = {
    "prototype": [
        (
            "gate.problem_statement",
            "Problem statement written",
            _flag("has_problem_statement", "Write the problem statement."),
        ),
        (
            "gate.target",
            "Target metric and value set",
            _flag("has_target", "Set the target value of the metric."),
        ),
        (
            "gate.human_level",
            "Human level (Bayes-error proxy) set",
            _flag("has_human_level", "Estimate human-level performance."),
        ),
    ],
    "diagnose": [
        (
            "gate.split_sizes",
            "Split sizes recorded",
            _flag("has_split_sizes", "Record a data assessment with split sizes."),
        ),
        ("gate.run_logged", "A run with train and dev error", _has_run),
    ],
    "iterate": [("gate.diagnosis_decided", "Diagnosis decided", _decided)],
    "production": [
        ("gate.target_met", "Target met on the dev set, with confidence", _target_met),
        ("gate.test_confirms", "Test error confirms the dev error", _test_confirms),
        ("gate.no_open_data_quality", "No open data-quality work", _no_open_data_work),
        ("gate.cost_known", "Running cost known", _cost_known),
        ("gate.cost_measured", "Cost curve from measured traffic", _cost_measured),
    ],
}

#: Gates that apply only when the GateInputs flag they name is set.
OPTIONAL = {"gate.cost_measured": "require_measured_cost"}


def gates_for(stage: str, inputs: GateInputs) -> list[GateCheck]:
    """Every gate of entering ``stage``, checked."""
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}; expected one of {STAGES}.")
    return [
        GateCheck(gate_id, title, *check(inputs))
        for gate_id, title, check in GATES.get(stage, [])
        if gate_id not in OPTIONAL or getattr(inputs, OPTIONAL[gate_id])
    ]


def next_stage(stage: str) -> str | None:
    index = STAGES.index(stage)
    return STAGES[index + 1] if index + 1 < len(STAGES) else None


def can_enter(stage: str, inputs: GateInputs) -> bool:
    return all(check.passed for check in gates_for(stage, inputs))


def gates_between(current: str, target: str, inputs: GateInputs) -> list[GateCheck]:
    """Gates of every stage after ``current`` up to ``target``: skipping a stage skips none."""
    start, end = STAGES.index(current), STAGES.index(target)
    return [check for stage in STAGES[start + 1 : end + 1] for check in gates_for(stage, inputs)]
