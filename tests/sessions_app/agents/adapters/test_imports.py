"""The adapters import no Django (a worker on another machine has only the SDK) and no
framework until one is used; a missing framework names the extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.engine_independent
MODULES = ["pydantic_ai", "langgraph", "openai_agents", "openai_compat"]


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_adapters_import_neither_django_nor_a_framework():
    imports = "; ".join(f"import sessions_app.agents.adapters.{m}" for m in MODULES)
    done = python(
        f"{imports}; import sys; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'django', 'channels', 'pydantic_ai', 'langgraph', 'langchain_core', 'agents'}))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [("pydantic_ai", "pydantic_ai", "pydantic-ai"), ("langgraph", "langgraph", "langgraph"),
     ("openai_agents", "agents", "openai-agents")],
)  # fmt: skip
def test_a_missing_framework_names_the_extra_to_install(module, framework, extra):
    done = python(
        f"import sys; sys.modules[{framework!r}] = None\n"
        f"from sessions_app.agents.adapters.{module} import handler\n"
        "try:\n    handler(object())\nexcept ImportError as exc:\n    print(exc)"
    )
    assert done.returncode == 0, done.stderr
    assert f"pip install 'django-ai-stack[{extra}]'" in done.stdout
