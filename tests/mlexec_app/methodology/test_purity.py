"""The methodology engine stays pure: standard library and numpy only (no Django, no torch)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine_independent

ENGINE = Path(__file__).resolve().parents[3] / "mlexec_app" / "methodology"
ALLOWED = set(sys.stdlib_module_names) | {"numpy"}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_engine_imports_only_the_standard_library_and_numpy():
    files = sorted(ENGINE.glob("*.py"))
    assert len(files) >= 8  # the walk sees the engine
    offenders = {f.name: sorted(imports(f) - ALLOWED) for f in files}
    assert {name: bad for name, bad in offenders.items() if bad} == {}
