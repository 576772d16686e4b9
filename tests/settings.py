"""The demo site's settings as the test suite uses them: mlexec jobs run inline."""

import os

# config.settings refuses to start without a SECRET_KEY outside DEBUG; the servers the tests
# start inherit this one.
os.environ.setdefault("SECRET_KEY", "tests-only-" + "k" * 50)

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
