"""Start real ASGI servers on loopback ports for end-to-end tests."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_manage(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode:  # say why: the command's own last words, not only its exit status
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-2000:]}")


# A migrated database per settings module and database server, which later sites copy.
_migrated: dict[tuple[str, str], str] = {}


def migrate(env: dict[str, str]) -> None:
    """``manage.py migrate`` on ``env``'s database, which is new (a SQLite path not yet
    written, or an empty PostgreSQL database).

    The first database of a test process (per settings module and server) is migrated for
    real and kept as a template; later ones start as copies of it (the SQLite backup API,
    PostgreSQL's ``CREATE DATABASE ... TEMPLATE``): the same tables and rows as migrating
    them, in a fraction of a second instead of a Django process running every migration.
    Every site still gets a database of its own.
    """
    url = env["DATABASE_URL"]
    if url.startswith("postgres"):
        server, _, name = url.rpartition("/")
        key = (env.get("DJANGO_SETTINGS_MODULE", ""), server)
        if key in _migrated:
            _clone_postgres(server, _migrated[key], name)
            return
        run_manage("migrate", "--no-input", env=env)
        template = f"test_template_{os.getpid()}_{len(_migrated)}"
        _clone_postgres(server, name, template, replace=False)
        atexit.register(_drop_postgres, server, template)
    elif url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        key = (env.get("DJANGO_SETTINGS_MODULE", ""), "sqlite")
        if key in _migrated:
            _copy_sqlite(_migrated[key], path)
            return
        run_manage("migrate", "--no-input", env=env)
        template = tempfile.mkstemp(prefix="migrated-", suffix=".sqlite3")[1]
        _copy_sqlite(path, template)
        atexit.register(os.unlink, template)
    else:
        run_manage("migrate", "--no-input", env=env)
        return
    _migrated[key] = template


def _copy_sqlite(source: str, target: str) -> None:
    import sqlite3

    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def _maintenance(server: str):  # psycopg is imported here: the first pass may lack it
    import psycopg

    return psycopg.connect(f"{server}/postgres".replace("postgres://", "postgresql://", 1),
                           autocommit=True)  # fmt: skip


def _clone_postgres(server: str, template: str, name: str, *, replace: bool = True) -> None:
    with _maintenance(server) as conn:
        if replace:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def _drop_postgres(server: str, name: str) -> None:
    with _maintenance(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_until_serving(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 90
) -> None:
    # A server's start is 2-3 s of CPU (Django, Channels, both apps); on a loaded 2-core CI
    # machine with four test workers it has taken over 30 s. Waiting longer costs nothing when
    # it starts sooner, and a server that died is reported at once (its exit status).
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


# daphne refuses (403) a WebSocket its application has not accepted within 5 s; a freshly
# started test site on a loaded CI machine can take longer for its first socket (URLs, consumer
# and database connection are set up on first use). The tests' own timeouts judge speed.
DAPHNE_CONNECT_TIMEOUT = ["--websocket_connect_timeout", "60"]
SERVERS = {
    "daphne": ["-m", "daphne", *DAPHNE_CONNECT_TIMEOUT, "-b", "127.0.0.1", "-p", "{port}"],
    "uvicorn": ["-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}"],
}


class DaphneProcess:
    """``daphne config.asgi:application`` on a loopback port, which a test may stop and restart.

    ``server="uvicorn"`` runs the same application under uvicorn. Its output goes to a file (a
    pipe nobody reads would block it once full).
    """

    def __init__(
        self, env: dict[str, str], port: int | None = None, server: str = "daphne"
    ) -> None:
        self.env = env
        self.server = server
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix=f"daphne-{self.port}-", suffix=".log")[1])

    def start(self) -> str:
        with self.log.open("ab") as out:
            args = [a.format(port=self.port) for a in SERVERS[self.server]]
            self.proc = subprocess.Popen(
                [sys.executable, *args, "config.asgi:application"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_until_serving(self.base + "/", self.proc, self.log)
        except BaseException:  # a start that fails or times out leaves no server behind
            self.stop(kill=True)
            raise
        return self.base

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.kill() if kill else self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> DaphneProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


@contextmanager
def daphne_server(env: dict[str, str], port: int | None = None) -> Iterator[str]:
    """Run the demo site's ASGI app; yield its base URL; stop it afterwards."""
    with DaphneProcess(env, port) as server:
        yield server.base


def site_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment of a demo-site process: this pass's engines, or a fresh SQLite file."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **extra}
    if not env.get("DATABASE_URL", "").startswith("postgres"):
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'site.sqlite3'}"
    return env


@contextmanager
def postgres_database(base_url: str, name: str) -> Iterator[str]:
    """Create a scratch PostgreSQL database next to ``base_url``'s; yield its URL; drop it."""
    import psycopg

    parts = base_url.rsplit("/", 1)
    with psycopg.connect(base_url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{parts[0]}/{name}"
    finally:
        with psycopg.connect(
            base_url.replace("postgres://", "postgresql://"), autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage_output(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


SETUP_SESSION = """
from django.contrib.auth import get_user_model
from sessions_app.access import mint_token
from sessions_app.models import Session
user, _ = get_user_model().objects.get_or_create(username={user!r})
Session.objects.get_or_create(name={session!r}, defaults={{"owner": user}})
print(mint_token(user))
"""


def session_with_token(env: dict[str, str], session: str, user: str = "agent") -> str:
    """Create ``user`` and a session it owns in the site's database; return a token for it."""
    out = manage_output("shell", "-c", SETUP_SESSION.format(user=user, session=session), env=env)
    return out.strip().splitlines()[-1]


CREATE_KEY = """
from django.contrib.auth import get_user_model
from sessions_app.keys import create_key
user, _ = get_user_model().objects.get_or_create(username={user!r})
print(create_key(user, "e2e agent", all_sessions=True)[1])
"""


def token_and_key(env: dict[str, str], session: str, user: str = "agent") -> tuple[str, str]:
    """``session_with_token`` and ``api_key_for`` in one Django process: a token of ``user``,
    who owns ``session``, and an API key of ``user`` for all its sessions."""
    script = SETUP_SESSION.format(user=user, session=session) + CREATE_KEY.format(user=user)
    token, key = manage_output("shell", "-c", script, env=env).strip().splitlines()[-2:]
    return token, key


@contextmanager
def site_database(tmp_path: Path, label: str) -> Iterator[dict[str, str]]:
    """Environment for a demo-site process with a migrated database of its own.

    First pass: a SQLite file. Second pass (DATABASE_URL is PostgreSQL): a scratch database,
    dropped afterwards; the channel layer gets its own Redis prefix.
    """
    base = os.environ.get("DATABASE_URL", "")
    extra = {
        "CHANNEL_LAYER_PREFIX": f"{label}{os.getpid()}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    if base.startswith("postgres"):
        with postgres_database(base, f"test_{label}_{os.getpid()}") as url:
            env = {**os.environ, **extra, "DATABASE_URL": url}
            migrate(env)
            yield env
    else:
        env = {
            **os.environ,
            **extra,
            "DATABASE_URL": f"sqlite:///{tmp_path / (label + '.sqlite3')}",
        }
        migrate(env)
        yield env


def api_key_for(env: dict[str, str], user: str = "agent") -> str:
    return (
        manage_output("shell", "-c", CREATE_KEY.format(user=user), env=env).strip().splitlines()[-1]
    )


@contextmanager
def database_copy(env: dict[str, str], tmp_path: Path, label: str) -> Iterator[dict[str, str]]:
    """``env`` (a ``site_database``'s) on a copy of its database, with a channel layer prefix of
    its own: the tables and rows made there once (users, sessions, keys), without a Django
    process to make them again. Nothing may be connected to ``env``'s database (PostgreSQL
    copies an idle database only)."""
    extra = {"CHANNEL_LAYER_PREFIX": f"{label}{os.getpid()}"}
    url = env["DATABASE_URL"]
    if url.startswith("postgres"):
        server, _, name = url.rpartition("/")
        copy = f"test_{label}_{os.getpid()}"
        if copy == name:
            raise ValueError(
                f"{label!r} names the database copied: the copy needs a name of its own"
            )
        _clone_postgres(server, name, copy)
        try:
            yield {**env, **extra, "DATABASE_URL": f"{server}/{copy}"}
        finally:
            _drop_postgres(server, copy)
    else:
        path = tmp_path / f"{label}.sqlite3"
        _copy_sqlite(url.removeprefix("sqlite:///"), str(path))
        yield {**env, **extra, "DATABASE_URL": f"sqlite:///{path}"}
