"""The lifecycle of a run: one agent turn inside a session."""

from __future__ import annotations

import enum
from typing import Final


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
