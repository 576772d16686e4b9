"""The lifecycle of a run: one agent turn inside a session."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final

from sessions_app.domain.errors import NotFound, RunEnded, RunExists


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FINISHED = "finished"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in FINAL

    def can_become(self, target: RunStatus) -> bool:
        return target in TRANSITIONS[self]


FINAL: Final = frozenset({RunStatus.CANCELLED, RunStatus.FINISHED, RunStatus.FAILED})

TRANSITIONS: Final[dict[RunStatus, frozenset[RunStatus]]] = {
    RunStatus.RUNNING: frozenset(
        {RunStatus.CANCELLING, RunStatus.CANCELLED, RunStatus.FINISHED, RunStatus.FAILED}
    ),
    # An agent may finish before it sees the cancel: its outcome then stands.
    RunStatus.CANCELLING: frozenset({RunStatus.CANCELLED, RunStatus.FINISHED, RunStatus.FAILED}),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.FINISHED: frozenset(),
    RunStatus.FAILED: frozenset(),
}


# --- what each event does to its run ---------------------------------------------------------

# Events that create, end or control runs; everything else only needs its run not to be over.
RUN_EVENTS: Final = frozenset(
    {"RUN_STARTED", "RUN_FINISHED", "RUN_ERROR", "CANCEL", "STEER", "CONTROL_ACK"}
)


def next_status(
    current: RunStatus | None, event_type: str, run_id: str, data: Mapping[str, Any]
) -> RunStatus | None:
    """The run's status after ``event_type`` is appended, or an error refusing the append.

    ``current`` is None for a run never started. Returns None when the status is unchanged.
    """
    if event_type == "RUN_STARTED":
        if current is not None:
            raise RunExists(f"run {run_id!r} was already started", run=run_id)
        return RunStatus.RUNNING
    if current is None:
        if event_type in ("CANCEL", "STEER", "CONTROL_ACK"):
            raise NotFound(f"no run {run_id!r} in this session", run=run_id)
        return None  # events of runs we never saw start are not tracked
    if current.is_final:
        raise RunEnded(
            f"run {run_id!r} is {current.value}; nothing more can be appended to it",
            run=run_id,
            status=current.value,
        )
    if event_type == "CANCEL":
        return RunStatus.CANCELLING
    if event_type == "STEER" and current is not RunStatus.RUNNING:
        raise RunEnded(
            f"run {run_id!r} is {current.value}; it cannot be steered",
            run=run_id,
            status=current.value,
        )
    if event_type == "RUN_FINISHED":
        return RunStatus.CANCELLED if data.get("outcome") == "cancelled" else RunStatus.FINISHED
    if event_type == "RUN_ERROR":
        return RunStatus.CANCELLED if data.get("code") == "cancelled" else RunStatus.FAILED
    return None
