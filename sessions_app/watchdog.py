"""Ends runs whose agent did not acknowledge a cancel in time.

Every ASGI worker runs one sweep loop (started by the first WebSocket connection). Sweeps on
several workers may race; the second append is refused by the run's lifecycle, so a run is
ended once.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from django.utils import timezone

from sessions_app import dbexec, log, services
from sessions_app.domain.errors import SessionError
from sessions_app.models import Run

logger = logging.getLogger(__name__)
SWEEP_SECONDS = 0.5
_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def overdue_cancels() -> list[tuple[int, str]]:
    rows = Run.objects.filter(status="cancelling", cancel_deadline__lt=timezone.now())
    return list(rows.values_list("session_id", "run_id")[:100])


def timeout_events(run_id: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "RUN_FINISHED",
            "run": run_id,
            "data": {"outcome": "cancelled", "reason": "timeout"},
        }
    ]


async def sweep() -> int:
    """End every overdue cancelling run; return how many this sweep ended."""
    ended = 0
    for session_pk, run_id in await dbexec.run_read(overdue_cancels):
        try:
            await log.append(services.request(session_pk, timeout_events(run_id)))
            ended += 1
        except SessionError:
            pass  # another worker ended it first, or the agent acknowledged meanwhile
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
