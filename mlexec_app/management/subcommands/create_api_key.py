"""``mlexec create-api-key <username>``: mint an API key for an agent and print it once."""

from __future__ import annotations

import argparse
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from mlexec_app import keys, services
from mlexec_app.exceptions import MlexecError
from mlexec_app.management.subcommands import Subcommand
from mlexec_app.models import Project


class CreateApiKey(Subcommand):
    name = "create-api-key"
    help = "Create an API key for a user's agents; the key is printed once and never stored."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="what the key is for")
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("--all-projects", action="store_true", help="every project of the user")
        scope.add_argument("--project", action="append", default=[], help="id or slug; repeatable")

    def handle(self, command: BaseCommand, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}.")
        try:
            mine = Project.objects.filter(owner=user)
            projects = [services.find_project(ref, mine) for ref in options["project"]]
            _, raw = keys.create_api_key(
                user, options["name"], projects=projects, all_projects=options["all_projects"]
            )
        except MlexecError as exc:
            raise CommandError(exc.message) from exc
        command.stdout.write(raw)
