"""Start real ASGI servers on loopback ports for end-to-end tests."""

from __future__ import annotations

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
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True
    )


def wait_until_serving(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 30
) -> None:
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


@contextmanager
def daphne_server(env: dict[str, str], port: int | None = None) -> Iterator[str]:
    """Run ``daphne config.asgi:application``; yield its base URL; stop it afterwards.

    The server's output goes to a file (a pipe nobody reads would block it once full).
    """
    port = port or free_port()
    log_file = tempfile.NamedTemporaryFile(prefix=f"daphne-{port}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "config.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base + "/", proc, Path(log_file.name))
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()
        os.unlink(log_file.name)


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
