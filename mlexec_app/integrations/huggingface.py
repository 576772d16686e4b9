"""Hugging Face Transformers callback: log a ``Trainer``'s metrics to mlexec.

``Trainer(..., callbacks=[MlexecTrainerCallback(tracker=..., project="reviews")])`` opens a
run when training begins (the ``TrainingArguments`` as parameters), logs everything the
Trainer logs (``loss``, ``eval_loss``, ``eval_accuracy``...) at its global step, and finishes
the run when training ends. The Trainer has no exception hook: to have a crash mark the run
failed, open the run yourself and pass ``run=`` (``with tracker.start_run(...) as run:``).
Only the main process logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'The Trainer callback needs transformers: pip install "django-ai-stack[transformers]"'
    ) from exc

from mlexec_app.client import Run, Tracker
from mlexec_app.integrations.common import RunOwner, metric_values

# The Trainer prefixes evaluation metrics with "eval_" and predictions' with "test_";
# compute_metrics usually returns "accuracy".
DEFAULT_MAP = {"dev": "eval_accuracy", "test": "test_accuracy"}


class MlexecTrainerCallback(TrainerCallback):
    def __init__(
        self,
        tracker: Tracker | None = None,
        project: str | int | None = None,
        *,
        name: str | None = None,
        run: Run | None = None,
        metric_map: Mapping[str, str] | None = None,
    ) -> None:
        self.owner = RunOwner(run, tracker, project, name)
        self.metric_map = dict(DEFAULT_MAP if metric_map is None else metric_map)

    @property
    def run(self) -> Run | None:
        return self.owner.run

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            model = kwargs.get("model")
            default = type(model).__name__ if model is not None else "trainer"
            self.owner.start(args.run_name or default, args.to_sanitized_dict())

    def on_log(
        self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kw: Any
    ) -> None:
        if not state.is_world_process_zero or self.run is None or self.run.status != "running":
            return
        self.run.log(metric_values(logs or {}, self.metric_map), step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.run is not None:
            self.run.flush()
            self.owner.finish()
