"""The demo site's settings as the test suite uses them: mlexec jobs run inline."""

import os

# config.settings refuses to start without a SECRET_KEY outside DEBUG; the servers the tests
# start inherit this one.
os.environ.setdefault("SECRET_KEY", "tests-only-" + "k" * 50)
# pytest-xdist's workers of one pass share one Redis: each gets its own channel layer prefix
# (session ids repeat across their databases), and so do the servers its tests start.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["CHANNEL_LAYER_PREFIX"] = (
        os.environ.get("CHANNEL_LAYER_PREFIX", "asgi") + os.environ["PYTEST_XDIST_WORKER"]
    )

from config.settings import *  # noqa: E402, F403

# Django's default hasher spends ~0.3 s of CPU per password (PBKDF2, a million rounds), on every
# user a test creates and every login: the suite made that several minutes of CI. These tests
# are not about password storage; the sites users run keep Django's default.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}

# Test runs side by side (two checkouts' `make test`, a helper's targeted run) must not share a
# SQLite test file: each pytest process gets its own.
_test = DATABASES["default"].get("TEST", {})  # noqa: F405
if _test.get("NAME"):
    import os as _os
    from pathlib import Path as _Path

    _name = _Path(_test["NAME"])
    _test["NAME"] = str(_name.with_name(f"{_name.stem}-{_os.getpid()}{_name.suffix}"))

# How a transactional test empties the tables on PostgreSQL: DELETE instead of Django's TRUNCATE
# (tests/flushing_postgresql/base.py says why).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    DATABASES["default"]["ENGINE"] = "tests.flushing_postgresql"  # noqa: F405
