"""System checks of the ``MLEXEC_APP`` setting (ids listed in docs/mlexec/index.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from mlexec_app.conf import DEFAULTS


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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
    for key in ("MIN_DEV_SIZE", "MAX_BATCH"):
        value = raw.get(key, DEFAULTS[key])
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(
                Error(
                    f"MLEXEC_APP['{key}'] must be a positive integer.",
                    hint=f"Default: {DEFAULTS[key]}",
                    id="mlexec_app.E005",
                )
            )
    return errors
