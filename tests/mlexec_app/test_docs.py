"""docs/mlexec/index.md explains every rule, gate and check the code has."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlexec_app.methodology.diagnosis import DIAGNOSIS_RULES
from mlexec_app.methodology.gates import GATES
from mlexec_app.methodology.planner import PLAN_RULES

DOC = Path(__file__).resolve().parents[2] / "docs" / "mlexec" / "index.md"

IDS = (
    DIAGNOSIS_RULES.ids()
    + PLAN_RULES.ids()
    + [gate_id for gates in GATES.values() for gate_id, _, _ in gates]
    + [f"mlexec_app.E00{i}" for i in range(1, 8)]
)


@pytest.mark.parametrize("rule_id", IDS)
def test_every_id_is_documented(rule_id):
    assert f"`{rule_id}`" in DOC.read_text()
