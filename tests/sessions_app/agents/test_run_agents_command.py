"""``manage.py run_agents`` starts without the site's system checks: a worker is a client of
the site it is pointed at, and its start-up is what a lost worker's turns wait for."""

from __future__ import annotations

import pytest
from django.core import checks
from django.core.management import ManagementUtility


def test_a_worker_starts_without_running_the_sites_checks(capsys, monkeypatch):
    monkeypatch.delenv("AGENT_API_KEY", raising=False)
    ran = []

    @checks.register("test-run-agents")
    def failing(app_configs, **kwargs):  # a site check that fails (and counts its calls)
        ran.append(True)
        return [checks.Error("the site is misconfigured", id="tests.E001")]

    try:
        # As from the command line. It gets as far as its own arguments: no key given, so it
        # stops there, loudly (a failed check would have stopped it first).
        with pytest.raises(SystemExit):
            ManagementUtility(["manage.py", "run_agents"]).execute()
    finally:
        checks.registry.registry.registered_checks.discard(failing)
    err = capsys.readouterr().err
    assert "worker key" in err and "misconfigured" not in err, err
    assert ran == []
