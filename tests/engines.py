"""Which engines this test pass runs on, and whether they answer.

The first pass uses the embedded default (SQLite, in-memory channel layer). The second pass
sets ``TEST_ENGINES=real`` with ``DATABASE_URL`` and ``REDIS_URL`` (``make test-real``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
from urllib.parse import urlsplit

HOW_TO_ENABLE = (
    "Start PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (or set "
    "TEST_DATABASE_URL / TEST_REDIS_URL for make), then run `make test-real`."
)


def real_pass() -> bool:
    return os.environ.get("TEST_ENGINES") == "real"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    try:
        with socket.create_connection((host, parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def unreachable_engines() -> list[str]:
    """Names of the real engines this pass needs that do not answer."""
    missing = []
    db_url = os.environ.get("DATABASE_URL", "")
    if not db_url.startswith("postgres"):
        missing.append("PostgreSQL (DATABASE_URL is not a postgres:// URL)")
    elif not _answers(db_url, 5432):
        missing.append(f"PostgreSQL at {db_url}")
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url.startswith("redis"):
        missing.append("Redis (REDIS_URL is not a redis:// URL)")
    elif not _answers(redis_url, 6379):
        missing.append(f"Redis at {redis_url}")
    return missing


def missing_server_binaries() -> list[str]:
    """The servers a test that starts PostgreSQL and Redis of its own (own_engines) lacks."""
    missing = []
    if not (glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb")):
        missing.append("PostgreSQL's server binaries (initdb)")
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    return missing
