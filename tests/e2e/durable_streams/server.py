"""Our server for the Durable Streams end-to-end tests, on this pass's engines.

First pass: a fresh SQLite file. Second pass (DATABASE_URL is PostgreSQL): a database of its
own, created here and dropped afterwards, so the server never touches the test database
pytest-django manages. Node packages are installed from package-lock.json when missing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.e2e import node
from tests.e2e.servers import daphne_server, migrate

HERE = Path(__file__).resolve().parent
# The server's long-poll timeout in these runs: the suite's own timeouts are 5 s.
LONG_POLL_SECONDS = 0.8


def ensure_node_modules() -> None:
    node.ensure_node_modules(HERE, "the Durable Streams e2e tests")


@contextmanager
def _postgres_database(url: str) -> Iterator[str]:
    import psycopg

    name = f"test_ds_e2e_{uuid.uuid4().hex[:8]}"
    base, _, _ = url.rpartition("/")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _database(tmp_path: Path) -> Iterator[str]:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        with _postgres_database(url) as own:
            yield own
    else:
        yield f"sqlite:///{tmp_path / 'ds.sqlite3'}"


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "CHANNEL_LAYER_PREFIX": f"ds{uuid.uuid4().hex[:8]}",
        "SESSIONS_LONG_POLL_TIMEOUT": str(LONG_POLL_SECONDS),
        **extra,
    }


@contextmanager
def ds_server(tmp_path: Path, **extra: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A migrated daphne serving the demo site; yields (base URL, its environment)."""
    with _database(tmp_path) as database_url:
        env = server_env(database_url, **extra)
        migrate(env)
        with daphne_server(env) as base:
            yield base, env


@contextmanager
def ds_servers(tmp_path: Path, count: int, **extra: str) -> Iterator[list[str]]:
    """``count`` daphne processes sharing one database and one channel layer."""
    with _database(tmp_path) as database_url:
        env = server_env(database_url, **extra)
        migrate(env)
        with ExitStack() as stack:
            yield [stack.enter_context(daphne_server(env)) for _ in range(count)]
