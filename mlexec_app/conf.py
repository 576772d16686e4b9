"""Settings of mlexec_app: ``MLEXEC_APP = {...}`` in the site's settings, read lazily."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # A gap smaller than this (in error-rate points, 0.005 = half a point) is not a problem.
    "MATERIALITY": 0.005,
    # Confidence level of every interval.
    "CONFIDENCE": 0.95,
    # Below this many dev examples no verdict is called.
    "MIN_DEV_SIZE": 100,
    # Most metric points one log-batch request may carry.
    "MAX_BATCH": 1000,
    # Diagnostic jobs (docs/mlexec/diagnostics.md): dotted paths of a progress publisher
    # ``(job, event) -> bool | None`` and a cancel checker ``(job) -> bool``, and the seconds
    # without a heartbeat after which a running job is failed.
    "PROGRESS_PUBLISHER": None,
    "CANCEL_CHECKER": None,
    "JOB_STALE_AFTER": 120,
}


@cache
def get_config() -> dict[str, Any]:
    return {**DEFAULTS, **getattr(settings, "MLEXEC_APP", {})}


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "MLEXEC_APP":
        get_config.cache_clear()
