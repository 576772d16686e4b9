"""Node packages for the e2e tests that drive npm clients, installed once per checkout."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest


def ensure_node_modules(here: Path, needed_for: str) -> None:
    """``npm ci`` in ``here`` unless its node_modules is complete; skip without Node.

    The two test passes run side by side (``make test``) and may both get here first on a
    fresh clone: a lock file makes the second wait for the first's install instead of
    installing into the same directory at once.
    """
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip(f"Node.js and npm are needed for {needed_for}")
    done = here / "node_modules" / ".package-lock.json"
    if done.exists():
        return
    with open(here / ".npm-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=here, check=True)
