"""Each app installs alone: neither imports the other, nor the demo site."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("sessions_app", ("mlexec_app", "config")), ("mlexec_app", ("sessions_app", "config"))],
)
def test_app_imports_neither_the_other_app_nor_the_demo_site(package, forbidden):
    offenders = {
        path: sorted(n for n in names if n.split(".")[0] in forbidden)
        for path, names in imported_modules(package).items()
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert offenders == {}


def test_the_walk_sees_imports():
    # Guards the test above against walking nothing.
    modules = imported_modules("sessions_app")
    assert any("django.apps" in names for names in modules.values())
