"""docs/guarantees.md and docs/security.md name the tests that prove each promise: they must all
exist."""

from __future__ import annotations

import ast
import re

import pytest

from tests.e2e.servers import ROOT

pytestmark = pytest.mark.engine_independent  # reads docs and test sources only

REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_test_named_in_the_guarantees_exists():
    text = "".join((ROOT / "docs" / page).read_text() for page in ("guarantees.md", "security.md"))
    references = REFERENCE.findall(text)
    assert len(references) > 20
    missing = []
    for path, name in references:
        source = ROOT / path
        tree = ast.parse(source.read_text()) if source.exists() else ast.Module(body=[])
        defined = {
            n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if name not in defined:
            missing.append(f"{path}::{name}")
    assert not missing, f"the docs name tests that do not exist: {missing}"
