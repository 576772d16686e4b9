"""Run the demo agent's worker against a running site (``make run`` starts it beside the
server): ``run_agents`` with the demo's handlers and a worker key made for it."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from sessions_app.agents.demo import handlers
from sessions_app.agents.openai_compat import LLMSettings
from sessions_app.agents.serve import run
from sessions_app.keys import create_key
from sessions_app.models import ApiKey

KEY_NAME = "demo agent"


class Command(BaseCommand):
    help = (
        "Answer the turns of the 'assistant' agent on every session of the site (a worker key "
        "owned by --user is made unless --api-key is given), with scripted answers or an "
        "OpenAI-compatible model (SESSIONS_DEMO_LLM or the LLM_BASE_URL, LLM_API_KEY, "
        "LLM_MODEL environment variables)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default=os.environ.get("SITE_URL", "http://127.0.0.1:8000"))
        parser.add_argument("--user", default=os.environ.get("DEMO_USER", "demo"))
        parser.add_argument("--api-key", default=os.environ.get("AGENT_API_KEY"))
        parser.add_argument(
            "--pace", type=float, default=0.03, help="Seconds per token (scripted)."
        )
        parser.add_argument("--concurrency", type=int, default=16)

    def handle(
        self,
        *args: Any,
        url: str,
        user: str,
        api_key: str | None,
        pace: float,
        concurrency: int,
        **options: Any,
    ) -> None:
        if not api_key:
            owner = get_user_model()._default_manager.filter(username=user).first()
            if owner is None:
                raise CommandError(f"no user {user!r}: create it first (make run does)")
            # One live key per demo agent: the one of the previous start is revoked.
            ApiKey.objects.filter(user=owner, name=KEY_NAME, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
            _, api_key = create_key(owner, KEY_NAME, agents="assistant")
        llm = llm_settings()
        self.stdout.write(
            f"Demo agent for {user!r} on {url} ({'model ' + llm.model if llm else 'scripted'})"
        )
        try:
            asyncio.run(run(url, api_key, handlers(llm, pace), concurrency=concurrency))
        except KeyboardInterrupt:
            pass


def llm_settings() -> LLMSettings | None:
    configured = getattr(settings, "SESSIONS_DEMO_LLM", None) or {}
    base = configured.get("BASE_URL") or os.environ.get("LLM_BASE_URL")
    if not base:
        return None
    return LLMSettings(
        base_url=base,
        model=configured.get("MODEL") or os.environ.get("LLM_MODEL", "gpt-4o-mini"),
        api_key=configured.get("API_KEY") or os.environ.get("LLM_API_KEY", ""),
    )
