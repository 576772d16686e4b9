"""The job sandbox's supervisor, against a child that finishes just as a cancel is asked for."""

from __future__ import annotations

import json
import socket

import pytest

from mlexec_app.diagnostics.sandbox import Limits, _supervise

pytestmark = pytest.mark.engine_independent


class FinishedChild:
    """A child that is still running at the supervisor's first wait and has exited when the
    supervisor writes to it: its report is in the pipe, its end of the pipe closed to writes."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.idle, self._never = socket.socketpair()  # a sentinel that never becomes ready
        self.sentinel = self.idle.fileno()
        self.exitcode = 0

    def fileno(self) -> int:
        return self.ours.fileno()

    def poll(self, timeout: float = 0) -> bool:
        self.ours.setblocking(False)
        try:
            return bool(self.ours.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            return False
        finally:
            self.ours.setblocking(True)

    def recv_bytes(self) -> bytes:
        return self.ours.recv(65536)

    def send_bytes(self, data: bytes) -> None:
        # The child sent its report and exited between the supervisor's wait and this write.
        self.theirs.sendall(json.dumps(["report", {"done": True}]).encode())
        raise BrokenPipeError(32, "Broken pipe")

    def join(self, timeout: float | None = None) -> None:
        pass

    def kill(self) -> None:
        pass


def test_a_cancel_that_meets_a_child_that_already_finished_keeps_its_report():
    child = FinishedChild()
    report = _supervise(
        child,
        child,  # type: ignore[arg-type]
        Limits(seconds=30),
        on_event=lambda event: None,
        should_cancel=lambda: True,
        heartbeat=lambda: None,
        heartbeat_every=60,
    )
    assert report == {"done": True}
