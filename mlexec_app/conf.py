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
    # Largest record of one run, in bytes of JSON: its params, latest metrics, artifacts and
    # notes (every run list carries them; batches add params and metric keys without end).
    "MAX_RUN_BYTES": 64 * 1024,
    # Diagnostic jobs (docs/mlexec/diagnostics.md): dotted paths of a progress publisher
    # ``(job, event) -> bool | None`` and a cancel checker ``(job) -> bool``, and the seconds
    # without a heartbeat after which a running job is failed.
    "PROGRESS_PUBLISHER": None,
    "CANCEL_CHECKER": None,
    "JOB_STALE_AFTER": 120,
    # What a job started over the API or the admin may load (docs/mlexec/diagnostics.md): a
    # registered dataset name -> what the worker loads ("digits", a file path, a dotted path);
    # a registered model factory name -> its dotted path; and the folder holding one folder
    # per project id, whose .csv/.npz files such a job may name by relative path (None: none).
    # The CLI (the site owner) may name anything.
    "JOB_DATASETS": {"digits": "digits"},
    "JOB_MODEL_FACTORIES": {},
    "DATA_ROOT": None,
    # Each job runs in a child process: stopped after this many seconds, and refused more
    # address space than this many MiB (0: no memory limit).
    "JOB_TIME_LIMIT": 3600,
    "JOB_MEMORY_LIMIT_MB": 4096,
    # Jobs one user may have queued or running at once, over all their projects (the CLI's
    # are not counted): each may hold a worker for JOB_TIME_LIMIT. 0: no limit.
    "MAX_OPEN_JOBS": 10,
    # Where diagnostics and searches train: "auto" (CUDA when torch sees a GPU, else the CPU)
    # or a torch device string ("cpu", "cuda:1"). Recorded on every run a job writes.
    "DEVICE": "auto",
    # The cost curve fed by real traffic (docs/mlexec/cost.md): dotted path of the site's
    # function ``(agent name) -> methodology.cost.Traffic | None``, and whether entering
    # production needs a curve computed from it (gate.cost_measured; LLM projects only).
    "TRAFFIC_SOURCE": None,
    "REQUIRE_MEASURED_COST": False,
}


@cache
def get_config() -> dict[str, Any]:
    return {**DEFAULTS, **getattr(settings, "MLEXEC_APP", {})}


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "MLEXEC_APP":
        get_config.cache_clear()
