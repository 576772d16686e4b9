from __future__ import annotations

import os

import pytest
from hypothesis import settings

from tests import engines

# Hypothesis fails an example that takes longer than 200 ms by default. On a loaded CI machine
# (the single-app runs at the lowest priority) a plain example took 800 ms: speed is the
# benchmarks' business, not the property tests'.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

# Servers the tests start (config.settings) run mlexec jobs inline too.
os.environ.setdefault("TASKS_BACKEND", "django_tasks.backends.immediate.ImmediateBackend")

_skip_reason: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _skip_reason
    if not engines.real_pass():
        return
    missing = engines.unreachable_engines()
    if not missing:
        return
    message = f"Real-engine test pass: {', '.join(missing)} not reachable. {engines.HOW_TO_ENABLE}"
    if engines.in_ci():
        # In CI this pass is required: fail loudly rather than skip.
        pytest.exit(message, returncode=3)
    _skip_reason = message


def pytest_report_header(config: pytest.Config) -> str:
    if engines.real_pass():
        return "engines: PostgreSQL + Redis (second pass)"
    return "engines: SQLite + in-memory channel layer (first pass)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _skip_reason:
        skip = pytest.mark.skip(reason=_skip_reason)
        for item in items:
            item.add_marker(skip)
        return
    if not engines.real_pass():
        skip = pytest.mark.skip(reason=f"needs PostgreSQL + Redis. {engines.HOW_TO_ENABLE}")
        missing = engines.missing_server_binaries()
        skip_own = pytest.mark.skip(reason=f"needs {', '.join(missing)} to start its own servers")
        for item in items:
            if "real_engines" in item.keywords:
                item.add_marker(skip)
            elif "own_engines" in item.keywords and missing and not engines.in_ci():
                item.add_marker(skip_own)  # in CI it runs, and fails saying what is missing
        return
    # Tests whose subject does not touch the engines (pure logic, training, the tracking
    # client: marked engine_independent) and tests that start
    # engines of their own (chaos: own_engines) ran in the first pass.
    once = [item for item in items if _first_pass_only(item)]
    if once and len(once) < len(items):
        config.hook.pytest_deselected(items=once)
        items[:] = [item for item in items if not _first_pass_only(item)]


def _first_pass_only(item: pytest.Item) -> bool:
    return "engine_independent" in item.keywords or "own_engines" in item.keywords


@pytest.fixture(autouse=True)
def _forget_claim_grants():
    """A claim lets its key publish in the claimed sessions for a few seconds without a lookup
    (``sessions_app.access.grant_held``): a test's database is new, its keys and sessions may
    reuse the last test's ids and names, so no grant outlives its test."""
    yield
    from django.apps import apps

    if apps.is_installed("sessions_app"):  # not on the mlexec_app-only site
        from sessions_app import access

        access._grants.clear()
