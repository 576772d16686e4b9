"""Run one job's diagnostics in a child process with a time and a memory limit.

The process that runs a job (a task worker, the CLI, a web process with the immediate task
backend) must outlive it: a job that runs away, runs out of memory, crashes in native code
(a segfault in a model factory) or is hostile ends *failed with the reason*, and the worker
goes on with the next job. So the diagnostics run in a child started with the ``forkserver``
method (``spawn`` where there is none; a plain ``fork`` of a process that has used torch's
thread pools can deadlock), which preloads torch and this module once, so a child starts in
milliseconds instead of the seconds torch takes to import.

The child gets plain JSON (what to load, the plan's parameters) and no database connection; it
sets its memory limit (``RLIMIT_AS``) before loading anything, and sends its progress events
and its report back over a pipe as JSON, never pickle: nothing the child sends can run code in
the parent. The parent stores and publishes the events, keeps the job's heartbeat, asks the
cancel checks and forwards a cancel over the same pipe (the diagnostics stop at their next
check, as in-process), and kills the child at the time limit. A child whose parent dies is
killed with it (``PR_SET_PDEATHSIG`` on Linux, and a watchdog thread elsewhere).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from mlexec_app.diagnostics.exceptions import Cancelled, DiagnosticsError

logger = logging.getLogger(__name__)

# How often the parent wakes to beat, check for a cancel and watch the clock.
POLL_SECONDS = 0.25
# A child asked to cancel that has not stopped after this long is killed (still cancelled).
CANCEL_GRACE_SECONDS = 10.0
# An orphaned child (its parent gone) exits within about this long.
ORPHAN_CHECK_SECONDS = 1.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Seconds of wall time, and MiB of address space (0 or None: no memory limit)."""

    seconds: float
    memory_mb: int | None = None


class JobFailed(DiagnosticsError):
    """The child failed: an error it reported, a limit it hit, or a crash (``reason`` says)."""


def run_in_child(
    task: dict[str, Any],
    limits: Limits,
    *,
    on_event: Callable[[dict[str, Any]], None],
    should_cancel: Callable[[], bool],
    heartbeat: Callable[[], None],
    heartbeat_every: float,
) -> dict[str, Any]:
    """Run ``task`` (see :func:`run_task`) in a child; return its report.

    Raises :class:`Cancelled` when a cancel stopped it and :class:`JobFailed` with the reason
    otherwise ("time limit ...", "memory limit ...", "crashed with signal 11 (SIGSEGV)", or the
    child's own ``TypeName: message``). The child is gone when this returns or raises.
    """
    ctx = _context()
    ours, theirs = ctx.Pipe(duplex=True)
    child = ctx.Process(
        target=_child_main,
        args=(theirs, task, limits.seconds, limits.memory_mb or 0),
        name="mlexec-diagnostics",
        daemon=True,  # also ended if this process exits normally while it runs
    )
    child.start()
    theirs.close()
    try:
        return _supervise(
            child, ours, limits, on_event, should_cancel, heartbeat, max(0.5, heartbeat_every)
        )
    finally:
        if child.is_alive():
            child.kill()
        child.join(timeout=10)
        ours.close()


def _supervise(
    child: Any,
    conn: Connection,
    limits: Limits,
    on_event: Callable[[dict[str, Any]], None],
    should_cancel: Callable[[], bool],
    heartbeat: Callable[[], None],
    heartbeat_every: float,
) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + limits.seconds
    last_beat = started
    cancel_sent: float | None = None
    while True:
        timeout = max(0.0, min(POLL_SECONDS, deadline - time.monotonic()))
        ready = wait([conn, child.sentinel], timeout=timeout)
        if conn in ready or (ready and conn.poll(0)):  # read what it sent before it exited
            message = _receive(conn)
            if message is None:
                child.join(timeout=10)
                raise JobFailed(_death(child.exitcode, limits))
            kind, body = message
            if kind == "event" and isinstance(body, dict):
                on_event(body)
            elif kind == "report" and isinstance(body, dict):
                return body
            elif kind == "cancelled":
                raise Cancelled(str(body))
            elif kind == "error" and isinstance(body, dict):
                logger.warning("Diagnostics child failed:\n%s", body.get("traceback", ""))
                raise JobFailed(_reason(body, limits))
        elif ready:  # the child exited without a word: a crash or a kill
            child.join(timeout=10)
            raise JobFailed(_death(child.exitcode, limits))
        now = time.monotonic()
        if now >= deadline:
            child.kill()
            raise JobFailed(
                f"time limit: stopped after {limits.seconds:g} s (MLEXEC_APP['JOB_TIME_LIMIT'])."
            )
        if now - last_beat >= heartbeat_every:
            heartbeat()
            last_beat = now
        if cancel_sent is None:
            if should_cancel():
                try:
                    conn.send_bytes(b'["cancel", null]')
                except OSError:
                    # The child finished (or died) since the wait: what it sent before it
                    # went, a report or nothing, decides on the next turn of the loop.
                    pass
                cancel_sent = now
        elif now - cancel_sent > CANCEL_GRACE_SECONDS:
            child.kill()
            raise Cancelled("Cancelled; the diagnostics did not stop in time and were killed.")


def _receive(conn: Connection) -> tuple[str, Any] | None:
    try:
        raw = conn.recv_bytes()
    except (EOFError, OSError):
        return None
    try:
        kind, body = json.loads(raw)
    except (ValueError, TypeError):
        return ("error", {"type": "ProtocolError", "message": "the child sent something else"})
    return (str(kind), body)


def _reason(body: dict[str, Any], limits: Limits) -> str:
    kind, message = str(body.get("type", "Error")), str(body.get("message", ""))
    if limits.memory_mb and (
        kind == "MemoryError" or "can't allocate memory" in message or "std::bad_alloc" in message
    ):
        return (
            f"memory limit: the job needed more than {limits.memory_mb} MiB "
            f"(MLEXEC_APP['JOB_MEMORY_LIMIT_MB']); {kind}: {message}".rstrip(": ")
        )
    return f"{kind}: {message}"


def _death(exitcode: int | None, limits: Limits) -> str:
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown"
        reason = f"crashed with signal {number} ({name})"
        if number == signal.SIGKILL and limits.memory_mb:
            reason += ": killed from outside, perhaps out of memory"
        return reason + "."
    return f"crashed: the diagnostics process exited with code {exitcode} before reporting."


# --- the child ---------------------------------------------------------------------------------


def _child_main(conn: Connection, task: dict[str, Any], seconds: float, memory_mb: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    _set_limits(memory_mb)
    threading.Thread(
        target=_watchdog, args=(os.getppid(), seconds + CANCEL_GRACE_SECONDS), daemon=True
    ).start()
    cancelled = False

    def send(kind: str, body: Any) -> None:
        conn.send_bytes(json.dumps([kind, body]).encode())

    def should_cancel() -> bool:
        nonlocal cancelled
        while not cancelled and conn.poll():
            cancelled = json.loads(conn.recv_bytes())[0] == "cancel"
        return cancelled

    try:
        report = run_task(task, lambda event: send("event", event), should_cancel)
        send("report", report)
    except Cancelled as exc:
        send("cancelled", str(exc))
    except BaseException as exc:  # noqa: BLE001  (the parent records it as the job's error)
        detail = {"type": type(exc).__name__, "message": str(exc)}
        try:
            send("error", {**detail, "traceback": traceback.format_exc()})
        except Exception:  # noqa: BLE001  (a broken pipe: the parent is gone or gave up)
            pass
    finally:
        conn.close()


def run_task(
    task: dict[str, Any],
    on_event: Callable[[dict[str, Any]], None],
    should_cancel: Callable[[], bool],
) -> dict[str, Any]:
    """Load ``task["dataset"]`` and run the plan ``task`` describes (in whatever process)."""
    from mlexec_app.diagnostics.data import load_dataset
    from mlexec_app.diagnostics.pipeline import plan_from_params, run_diagnostics
    from mlexec_app.diagnostics.progress import Progress
    from mlexec_app.diagnostics.runtime import use_device

    used = use_device(task.get("device", "auto"))
    params = task["params"]
    if list(task["diagnostics"]) == ["search"]:
        return {**_run_search(task, on_event, should_cancel), "device": used}
    plan = plan_from_params(task["diagnostics"], params, task.get("target_error"))
    data = load_dataset(
        task["dataset"], label=params.get("label", "label"), slice_column=params.get("slice_column")
    )
    progress = Progress(on_event, should_cancel, min_interval=0.5)
    return {**run_diagnostics(data, plan, progress), "device": used}


def _run_search(
    task: dict[str, Any],
    on_event: Callable[[dict[str, Any]], None],
    should_cancel: Callable[[], bool],
) -> dict[str, Any]:
    from dataclasses import replace

    from mlexec_app.diagnostics.data import load_dataset
    from mlexec_app.diagnostics.networks import ModelSpec
    from mlexec_app.diagnostics.progress import Progress
    from mlexec_app.diagnostics.search import SearchOptions, run_search
    from mlexec_app.diagnostics.training import TrainConfig

    params = task["params"]
    options = replace(
        SearchOptions.from_params(params.get("search")), done=tuple(task.get("done") or ())
    )
    data = load_dataset(
        task["dataset"], label=params.get("label", "label"), slice_column=params.get("slice_column")
    )
    progress = Progress(on_event, should_cancel, min_interval=0.5)
    result = run_search(
        data, options, spec=ModelSpec.from_dict(params.get("model")),
        config=TrainConfig(**params.get("train", {})), progress=progress,
    )  # fmt: skip
    return {"search": result, "baseline": result["baseline"]}


def _set_limits(memory_mb: int) -> None:
    try:
        import resource
    except ImportError:  # not on Windows: the time limit still holds
        return
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
    if memory_mb > 0:
        limit = memory_mb * MIB
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _die_with_parent() -> None:
    """Linux: the kernel kills this child when the process that forked it exits."""
    name = ctypes.util.find_library("c")
    if not name or not hasattr(signal, "SIGKILL"):
        return
    try:
        ctypes.CDLL(name, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _watchdog(parent: int, seconds: float) -> None:
    """Exit when orphaned or long past the time limit, whatever the main thread is doing."""
    deadline = time.monotonic() + seconds
    while True:
        time.sleep(ORPHAN_CHECK_SECONDS)
        if os.getppid() != parent or time.monotonic() > deadline:
            os._exit(70)


@functools.cache
def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        preload = [__name__]
        if importlib.util.find_spec("torch") is not None:
            preload.insert(0, "torch")
        ctx.set_forkserver_preload(preload)
        return ctx
    return multiprocessing.get_context("spawn")
