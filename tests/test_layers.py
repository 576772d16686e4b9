"""The import contracts in pyproject.toml hold: layers point down, the pure packages stay pure,
the two apps stay apart (import-linter's ``lint-imports``, as a developer runs it).

It runs in a child process: inside the test process, twisted's zope.interface (loaded with
daphne) confuses import-linter's reading of its own contract classes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine_independent

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
CONFIG = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]


def contract(name_start: str) -> dict:
    [found] = [c for c in CONFIG["contracts"] if c["name"].startswith(name_start)]
    return found


def lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", command, str(config), "--no-cache", "--no-logo"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def write_config(path: Path, contracts: list[dict]) -> Path:
    """An import-linter config with the project's roots and only ``contracts``."""
    lines = ["[tool.importlinter]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in CONFIG.items() if key != "contracts"]
    for item in contracts:
        lines += ["", "[[tool.importlinter.contracts]]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in item.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_import_contract_is_kept():
    result = lint_imports(PYPROJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(CONFIG['contracts'])} kept, 0 broken" in result.stdout


def test_the_contracts_cover_what_the_architecture_promises():
    layers = contract("sessions_app layers")["layers"]
    assert [layer.split(" : ")[0] for layer in layers[-3:]] == ["metrics", "backpressure", "domain"]
    assert "models" in layers[-2] and "log" in layers[-4] and "services" in layers[1]
    assert "consumers" in layers[0] and "streams" in layers[0] and "api" in layers[0]
    assert contract("the two apps")["type"] == "independence"
    no_django = contract("the agent SDK")
    assert set(no_django["source_modules"]) >= {"sessions_app.client", "sessions_app.agents.base"}
    assert "django" in no_django["forbidden_modules"]


def test_an_upward_import_breaks_the_layers(tmp_path):
    # The same layers upside down: the real code's imports (a model importing the domain)
    # must now be reported, so the check does see the code it guards.
    upside_down = {**contract("sessions_app layers")}
    upside_down["layers"] = list(reversed(upside_down["layers"]))
    config = write_config(tmp_path / "upside_down.toml", [upside_down])
    result = lint_imports(config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sessions_app.models is not allowed to import sessions_app.domain" in result.stdout
