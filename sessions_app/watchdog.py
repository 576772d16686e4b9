"""Ends runs whose agent did not acknowledge a cancel in time, or went silent.

Every ASGI worker runs one sweep loop (started by the first WebSocket connection). Sweeps on
several workers may race; the second append is refused by the run's lifecycle, so a run is
ended once.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from sessions_app import dbexec, log, services
from sessions_app.conf import setting
from sessions_app.domain.errors import SessionError
from sessions_app.models import Run

logger = logging.getLogger(__name__)
SWEEP_SECONDS = 0.5
_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def overdue_cancels() -> list[tuple[int, str]]:
    rows = Run.objects.filter(status="cancelling", cancel_deadline__lt=timezone.now())
    return list(rows.values_list("session_id", "run_id")[:100])


def lost_agents() -> list[tuple[int, str]]:
    timeout = setting("AGENT_HEARTBEAT_TIMEOUT")
    if timeout is None:
        return []
    cutoff = timezone.now() - timedelta(seconds=timeout)
    silent = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    rows = Run.objects.filter(silent, status="running")
    return list(rows.values_list("session_id", "run_id")[:100])


def lost_events(run_id: str) -> list[dict[str, Any]]:
    timeout = setting("AGENT_HEARTBEAT_TIMEOUT")
    message = f"no sign of life from the agent for {timeout} s"
    return [
        {"type": "RUN_ERROR", "run": run_id, "data": {"code": "agent_lost", "message": message}}
    ]


def timeout_events(run_id: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "RUN_FINISHED",
            "run": run_id,
            "data": {"outcome": "cancelled", "reason": "timeout"},
        }
    ]


async def sweep() -> int:
    """End overdue cancelling runs and runs whose agent is lost; return how many it ended."""
    ended = 0
    for finder, events in ((overdue_cancels, timeout_events), (lost_agents, lost_events)):
        for session_pk, run_id in await dbexec.run_read(finder):
            try:
                await log.append(services.request(session_pk, events(run_id)))
                ended += 1
            except SessionError:
                pass  # another worker ended it first, or the agent spoke up meanwhile
    return ended


async def _loop() -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            await sweep()
        except Exception:  # keep sweeping; a database outage ends by itself
            logger.warning("cancel watchdog sweep failed", exc_info=True)


def ensure_running() -> None:
    """Start this event loop's sweep loop once."""
    loop = asyncio.get_running_loop()
    if loop not in _loops:
        _loops.add(loop)
        task = loop.create_task(_loop())
        _tasks.add(task)


_tasks: set[asyncio.Task[None]] = set()
