"""Run an agent worker: claims the turns of the agents registered in the given modules."""

from __future__ import annotations

import asyncio
import importlib
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from sessions_app.agents import registry
from sessions_app.agents.serve import run
from sessions_app.conf import setting


class Command(BaseCommand):
    help = (
        "Run an agent worker. Each MODULE is imported (its @agent handlers register), the "
        "gateways of SESSIONS_APP['AGENT_GATEWAYS'] are added, and the worker claims their "
        "turns on the site at --url with a worker key (--api-key or AGENT_API_KEY). SIGTERM "
        "drains: running turns finish for --drain seconds, the rest are handed back."
    )

    # A worker is a client of the site at --url, not a server of this one: the site's checks
    # (which import its whole URL configuration) were half of a worker's start-up, and a
    # worker started to take over a lost one's turns is waited for (issue #20's takeover).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("modules", nargs="*", metavar="MODULE")
        parser.add_argument("--url", default=os.environ.get("SITE_URL", "http://127.0.0.1:8000"))
        parser.add_argument("--api-key", default=os.environ.get("AGENT_API_KEY"))
        parser.add_argument("--concurrency", type=int, default=4)
        parser.add_argument("--drain", type=float, default=30.0)

    def handle(
        self,
        *args: Any,
        modules: list[str],
        url: str,
        api_key: str | None,
        concurrency: int,
        drain: float,
        **options: Any,
    ) -> None:
        if not api_key:
            raise CommandError(
                "give a worker key with --api-key or AGENT_API_KEY "
                "(make one with: python manage.py make_worker_key USER --agents NAME,...)"
            )
        for module in modules:  # named by the operator on the command line, not by a caller
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise CommandError(f"cannot import {module!r}: {exc}") from exc
        handlers = {**gateway_handlers(), **registry.handlers}
        if not handlers:
            raise CommandError(
                "no agent to serve: name a module with @agent handlers, or set "
                "SESSIONS_APP['AGENT_GATEWAYS']"
            )
        self.stdout.write(f"Agent worker for {sorted(handlers)} on {url}")
        asyncio.run(run(url, api_key, handlers, concurrency=concurrency, drain_seconds=drain))


def gateway_handlers() -> dict[str, Any]:
    """Handlers for the agents the site puts in front of an existing agent server."""
    gateways = setting("AGENT_GATEWAYS")
    if not gateways:
        return {}
    from sessions_app.agents import gateway

    try:
        return gateway.handlers(gateways)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc  # the message names the setting
