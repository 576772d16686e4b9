"""Make a worker key: it claims the turns of the named agents on every session of the site."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sessions_app.domain.turns import AGENT_NAME
from sessions_app.keys import create_key


class Command(BaseCommand):
    help = (
        "Make a worker key owned by USER for the agents named with --agents (comma-separated, "
        "* for any) and print it once. A worker key reaches a session only while it holds one "
        "of the session's turns."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user")
        parser.add_argument("--agents", required=True)
        parser.add_argument("--name", default="agent worker")

    def handle(self, *args: Any, user: str, agents: str, name: str, **options: Any) -> None:
        names = [a.strip() for a in agents.split(",") if a.strip()]
        if not names or not all(a == "*" or AGENT_NAME.fullmatch(a) for a in names):
            raise CommandError("--agents: agent names separated by commas, or *")
        owner = get_user_model()._default_manager.filter(username=user).first()
        if owner is None:
            raise CommandError(f"no user {user!r}")
        _, secret = create_key(owner, name, agents=",".join(names))
        self.stdout.write(secret)
