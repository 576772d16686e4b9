"""The demo site's settings as the test suite uses them: mlexec jobs run inline."""

from config.settings import *  # noqa: F403

TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}

# Test runs side by side (two checkouts' `make test`, a helper's targeted run) must not share a
# SQLite test file: each pytest process gets its own.
_test = DATABASES["default"].get("TEST", {})  # noqa: F405
if _test.get("NAME"):
    import os as _os
    from pathlib import Path as _Path

    _name = _Path(_test["NAME"])
    _test["NAME"] = str(_name.with_name(f"{_name.stem}-{_os.getpid()}{_name.suffix}"))
