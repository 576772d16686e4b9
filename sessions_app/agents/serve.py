"""Running a worker from a command line: a key, a client, the handlers, SIGTERM to drain.

``run_agents`` and ``demo_agent`` (management commands) call ``run``; it is plain asyncio and
the SDK, so the same works in a process without Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Mapping

from sessions_app.agents.base import Handler
from sessions_app.agents.worker import Worker
from sessions_app.client import SessionsClient

logger = logging.getLogger("sessions_app.agents.worker")


async def run(
    url: str,
    api_key: str,
    handlers: Mapping[str, Handler],
    *,
    concurrency: int = 4,
    drain_seconds: float = 30.0,
    label: str = "agent worker",
) -> None:
    """Serve ``handlers`` on the site at ``url`` until SIGTERM or SIGINT, then drain."""
    # What start-up made (Django, the handlers' frameworks) lives as long as the process: out
    # of the collector's sight, the first full collection does not stall an answer for it.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with SessionsClient(url, api_key=api_key, label=label) as client:
        worker = Worker(client, handlers, concurrency=concurrency, drain_seconds=drain_seconds)
        logger.info("worker %s serves %s on %s", worker.name, sorted(handlers), url)
        await worker.serve(stop)
