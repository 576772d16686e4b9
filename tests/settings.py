"""The demo site's settings as the test suite uses them: mlexec jobs run inline."""

from config.settings import *  # noqa: F403

TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
