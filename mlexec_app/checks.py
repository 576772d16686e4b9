"""System checks of the ``MLEXEC_APP`` setting (ids listed in docs/mlexec/index.md)."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.utils.module_loading import import_string

from mlexec_app.conf import DEFAULTS

#: What MLEXEC_APP["DEVICE"] may say (torch itself is not imported to check it).
DEVICE_PATTERN = re.compile(r"auto|cpu|(cuda|xpu|mps|mtia|hpu)(:\d{1,3})?")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    """A whole number from 0 on (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    raw = getattr(settings, "MLEXEC_APP", {})
    if not isinstance(raw, dict):
        return [
            Error("MLEXEC_APP must be a dict.", hint="MLEXEC_APP = {...}", id="mlexec_app.E001")
        ]
    errors = []
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        errors.append(
            Error(
                f"Unknown MLEXEC_APP keys: {', '.join(unknown)}.",
                hint=f"Known keys: {', '.join(DEFAULTS)}.",
                id="mlexec_app.E002",
            )
        )
    materiality = raw.get("MATERIALITY", DEFAULTS["MATERIALITY"])
    if not _number(materiality) or not 0 <= materiality < 1:
        errors.append(
            Error(
                "MLEXEC_APP['MATERIALITY'] must be in [0, 1).",
                hint="e.g. 0.005",
                id="mlexec_app.E003",
            )
        )
    confidence = raw.get("CONFIDENCE", DEFAULTS["CONFIDENCE"])
    if not _number(confidence) or not 0.5 <= confidence < 1:
        errors.append(
            Error(
                "MLEXEC_APP['CONFIDENCE'] must be in [0.5, 1).",
                hint="e.g. 0.95",
                id="mlexec_app.E004",
            )
        )
    for key in ("MIN_DEV_SIZE", "MAX_BATCH", "MAX_RUN_BYTES"):
        value = raw.get(key, DEFAULTS[key])
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(
                Error(
                    f"MLEXEC_APP['{key}'] must be a positive integer.",
                    hint=f"Default: {DEFAULTS[key]}",
                    id="mlexec_app.E005",
                )
            )
    for key in ("JOB_DATASETS", "JOB_MODEL_FACTORIES"):
        value = raw.get(key, DEFAULTS[key])
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            errors.append(
                Error(
                    f"MLEXEC_APP['{key}'] must map names to strings.",
                    hint='e.g. {"digits": "digits"} or {"resnet": "myproject.models.resnet"}',
                    id="mlexec_app.E006",
                )
            )
    limit, memory = raw.get("JOB_TIME_LIMIT", 1), raw.get("JOB_MEMORY_LIMIT_MB", 0)
    root, most = raw.get("DATA_ROOT"), raw.get("MAX_OPEN_JOBS", 0)
    if (
        not _number(limit)
        or limit <= 0
        or not _whole(memory)
        or not _whole(most)
        or not (root is None or isinstance(root, str | PurePath))
    ):
        errors.append(
            Error(
                "MLEXEC_APP['JOB_TIME_LIMIT'] must be a positive number of seconds, "
                "'JOB_MEMORY_LIMIT_MB' a whole number of MiB (0: none), 'MAX_OPEN_JOBS' a "
                "whole number of jobs (0: no limit) and 'DATA_ROOT' a folder path or None.",
                hint=f"Defaults: {DEFAULTS['JOB_TIME_LIMIT']}, {DEFAULTS['JOB_MEMORY_LIMIT_MB']}, "
                f"{DEFAULTS['MAX_OPEN_JOBS']}, None",
                id="mlexec_app.E007",
            )
        )
    wanted = raw.get("DEVICE", DEFAULTS["DEVICE"])
    if not isinstance(wanted, str) or not DEVICE_PATTERN.fullmatch(wanted):
        errors.append(
            Error(
                "MLEXEC_APP['DEVICE'] must be 'auto' or a torch device string.",
                hint='"auto", "cpu", "cuda", "cuda:1", "mps"',
                id="mlexec_app.E008",
            )
        )
    errors.extend(_traffic_errors(raw))
    return errors


def _traffic_errors(raw: dict[str, Any]) -> list[Error]:
    """TRAFFIC_SOURCE names a function that imports (the operator's path, imported here once
    so a typo fails at start-up, not on a project page); REQUIRE_MEASURED_COST is a bool."""
    errors = []
    path = raw.get("TRAFFIC_SOURCE")
    if path is not None:
        problem = None
        if not isinstance(path, str) or "." not in path:
            problem = "must be a dotted path to a function, or None"
        else:
            try:
                found = import_string(path)
            except ImportError as exc:
                problem = f"does not import ({exc})"
            else:
                problem = None if callable(found) else "is not a function"
        if problem:
            errors.append(
                Error(
                    f"MLEXEC_APP['TRAFFIC_SOURCE'] {problem}.",
                    hint='e.g. "config.traffic.measured": (agent name) -> Traffic | None',
                    id="mlexec_app.E009",
                )
            )
    if not isinstance(raw.get("REQUIRE_MEASURED_COST", False), bool):
        errors.append(
            Error(
                "MLEXEC_APP['REQUIRE_MEASURED_COST'] must be True or False.",
                hint="Default: False",
                id="mlexec_app.E010",
            )
        )
    return errors
