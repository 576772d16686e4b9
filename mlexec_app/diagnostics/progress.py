"""Progress reporting and cooperative cancellation for long diagnostics.

The diagnostics never know who watches them. They call a :class:`Progress`, which forwards
events (plain JSON-able dicts) to an ``on_event`` callback and asks a ``should_cancel``
callback whether to stop; when it says yes, the next check raises :class:`Cancelled`.
Training loops check after every epoch, the learning curve after every size, so a cancel
takes effect within one epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlexec_app.diagnostics.exceptions import Cancelled

Event = dict[str, Any]


class Progress:
    """Forwards progress events and raises :class:`Cancelled` when asked to stop.

    Parameters
    ----------
    on_event:
        Called with every event, e.g. ``{"stage": "learning_curve", "step": "size",
        "done": 2, "total": 6, "fraction": 0.41}``.
    should_cancel:
        Called at each check; a true answer stops the diagnostics.
    min_interval:
        Epoch-level events closer together than this many seconds are not forwarded (they are
        still checked for cancellation), so a fast loop does not flood a database.
    """

    def __init__(
        self,
        on_event: Callable[[Event], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        *,
        min_interval: float = 0.25,
    ) -> None:
        self.on_event = on_event
        self.should_cancel = should_cancel
        self.min_interval = min_interval
        self.stages: list[str] = []
        self.stage_index = 0
        self.stage = ""
        self.within = 0.0
        self._last_sent = 0.0

    def plan(self, stages: list[str]) -> None:
        """Declare the stages ahead, so events carry the overall fraction done."""
        self.stages = list(stages)

    def start_stage(self, name: str) -> None:
        self.stage = name
        self.stage_index = self.stages.index(name) if name in self.stages else self.stage_index
        self.within = 0.0
        self.emit({"step": "stage_started"}, force=True)

    def stage_step(self, step: str, done: int, total: int, **data: Any) -> None:
        """A coarse step inside the stage (a pass, a fold, a training size)."""
        self.within = done / total if total else 0.0
        self.emit({"step": step, "done": done, "total": total, **data}, force=True)

    def ticker(self, step: str) -> Callable[[int, int], None]:
        """A callback for training loops: ``tick(done, total)`` after each epoch."""
        return lambda done, total: self.emit({"step": step, "done": done, "total": total})

    @property
    def fraction(self) -> float:
        if not self.stages:
            return 0.0
        return min(1.0, (self.stage_index + self.within) / len(self.stages))

    def emit(self, event: Event, *, force: bool = False) -> None:
        """Forward ``event`` (throttled unless ``force``) and check for cancellation."""
        now = time.monotonic()
        if self.on_event and (force or now - self._last_sent >= self.min_interval):
            self._last_sent = now
            self.on_event({"stage": self.stage, "fraction": round(self.fraction, 4), **event})
        self.check()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the caller asked to stop."""
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(f"Cancelled during {self.stage or 'diagnostics'}.")
