"""The session domain stays pure: standard library only (no Django, no channels, no other
sessions_app layer), so its logic can be tested and reused without I/O."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine_independent

DOMAIN = Path(__file__).resolve().parents[3] / "sessions_app" / "domain"
ALLOWED = set(sys.stdlib_module_names)
OWN = "sessions_app.domain"


def imports(path: Path) -> set[str]:
    """What the module imports, as top-level names, except the domain's own modules."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue  # relative imports stay inside the package
        for module in modules:
            if module != OWN and not module.startswith(OWN + "."):
                names.add(module if module.startswith("sessions_app") else module.split(".")[0])
    return names


def test_the_walk_sees_every_domain_module():
    assert len(sorted(DOMAIN.glob("*.py"))) >= 10


def test_domain_imports_only_the_standard_library():
    offenders = {f.name: sorted(imports(f) - ALLOWED) for f in sorted(DOMAIN.glob("*.py"))}
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_the_check_catches_a_django_or_higher_layer_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import django.db\nfrom sessions_app.log import append\nfrom . import events\n")
    assert imports(bad) - ALLOWED == {"django", "sessions_app.log"}
