"""What every Django process of a site with both apps imports when it starts (``manage.py``
commands, workers, servers): not the training stack, the audit's clients or Twisted. Each of
those cost tenths of a second of CPU in every process, used or not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine_independent

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "torch", "twisted", "httpx", "sessions_app.audit.probes", "django.test")
PROBE = f"""
import json, sys
import django
django.setup()
from django.contrib import admin
admin.autodiscover()
print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))
"""


def test_a_demo_site_process_starts_without_the_heavy_modules(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DEBUG": "1",
    }
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_the_audit_names_still_import_from_the_package():
    from sessions_app import audit
    from sessions_app.audit.run import run_audit

    assert audit.run_audit is run_audit
    assert audit.Target.__module__ == "sessions_app.audit.probes"
    with pytest.raises(AttributeError):
        audit.nothing_here  # noqa: B018


def test_the_demo_asgi_application_freezes_its_start_up_objects(tmp_path):
    """The server's collector no longer walks what start-up made (Django, the apps, the API
    schema): the first full collection stalled a worker's answers for 85-100 ms in issue #20's
    benchmark; in the server it would stall every socket of the process."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DEBUG": "1",
    }
    env.pop("REDIS_URL", None)
    probe = "import gc, config.asgi; print(gc.get_freeze_count())"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    assert int(done.stdout.split()[-1]) > 10_000
