"""PyTorch Lightning callback: log a ``lightning.pytorch.Trainer``'s metrics to mlexec.

``MlexecCallback(tracker=..., project="digits")`` opens a run when fitting starts (the
module's ``hparams`` as parameters), logs every metric in ``trainer.callback_metrics`` at the
end of each training epoch (step = epoch) and after ``trainer.test``, and finishes the run
when fitting ends (``finish_on="test"``: after testing), or marks it failed on an exception.
Pass ``run=`` instead to log into a run you manage yourself. Only global rank zero logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'The Lightning callback needs lightning: pip install "django-ai-stack[lightning]"'
    ) from exc

from mlexec_app.client import Run, Tracker
from mlexec_app.integrations.common import RunOwner, metric_values

# Names Lightning users commonly log, mapped to the project's metric on each split.
DEFAULT_MAP = {"train": "train_acc", "dev": "val_acc", "test": "test_acc"}


class MlexecCallback(Callback):
    def __init__(
        self,
        tracker: Tracker | None = None,
        project: str | int | None = None,
        *,
        name: str | None = None,
        run: Run | None = None,
        metric_map: Mapping[str, str] | None = None,
        finish_on: str = "fit",
    ) -> None:
        if finish_on not in ("fit", "test"):
            raise ValueError('finish_on is "fit" or "test".')
        self.owner = RunOwner(run, tracker, project, name)
        self.metric_map = dict(DEFAULT_MAP if metric_map is None else metric_map)
        self.finish_on = finish_on

    @property
    def run(self) -> Run | None:
        return self.owner.run

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            params = dict(getattr(pl_module, "hparams", {}) or {})
            self.owner.start(type(pl_module).__name__, params)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._log(trainer, trainer.current_epoch)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero and self.run is not None:
            self.run.flush()
            if self.finish_on == "fit":
                self.owner.finish()

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._log(trainer, trainer.current_epoch)
        if trainer.is_global_zero and self.finish_on == "test":
            self.owner.finish()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if trainer.is_global_zero:
            self.owner.fail(exception)

    def _log(self, trainer: Any, step: int) -> None:
        if not trainer.is_global_zero or self.run is None or trainer.sanity_checking:
            return
        if self.run.status != "running":
            return
        self.run.log(metric_values(trainer.callback_metrics, self.metric_map), step=step)
