"""What both callbacks share: the run they log to and the metric-name mapping."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlexec_app.client import Run, Tracker
from mlexec_app.client.tracker import SPLITS


def metric_values(metrics: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, float]:
    """The framework's metrics under their own names, plus each mapped one under its split.

    ``mapping`` is ``{split: framework_name}`` (``{"dev": "val_acc"}``); a metric that is not
    a number (a string, a tensor of several values) is left out.
    """
    unknown = set(mapping) - set(SPLITS)
    if unknown:
        raise ValueError(f"Map only the splits {SPLITS}; got {sorted(unknown)}.")
    values: dict[str, float] = {}
    for name, raw in metrics.items():
        number = _scalar(raw)
        if number is not None and name not in SPLITS:
            values[name] = number
    for split, name in mapping.items():
        if name in values:
            values[split] = values[name]
    return values


def _scalar(value: Any) -> float | None:
    if hasattr(value, "numel") and value.numel() != 1:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class RunOwner:
    """Either logs to a run the caller opened, or opens (and ends) its own."""

    def __init__(
        self,
        run: Run | None,
        tracker: Tracker | None,
        project: str | int | None,
        name: str | None,
    ) -> None:
        if run is None and (tracker is None or project is None):
            raise ValueError("Give run=, or tracker= and project=.")
        self.run, self.tracker, self.project, self.name = run, tracker, project, name
        self.owns = run is None

    def start(self, default_name: str, params: Mapping[str, Any]) -> Run:
        if self.run is None:
            assert self.tracker is not None and self.project is not None
            self.run = self.tracker.start_run(
                self.project, self.name or default_name, params=params
            )
        elif params:
            self.run.log_params(params)
        return self.run

    def finish(self) -> None:
        if self.owns and self.run is not None:
            self.run.finish()

    def fail(self, exc: BaseException) -> None:
        if self.owns and self.run is not None:
            self.run.fail(f"{type(exc).__name__}: {exc}"[:2000])
