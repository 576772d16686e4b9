"""``mlexec diagnose <project>``: print the project's diagnosis and plan."""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mlexec_app import reports, services
from mlexec_app.exceptions import MlexecError
from mlexec_app.management.subcommands import Subcommand


class Diagnose(Subcommand):
    name = "diagnose"
    help = "Print a readable diagnosis and plan of a project (by id or slug)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("project", help="project id or slug")
        parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON")

    def handle(self, command: BaseCommand, **options: Any) -> None:
        try:
            project = services.find_project(options["project"])
        except MlexecError as exc:  # not found, or a slug several users have
            raise CommandError(exc.message) from exc
        if options["json"]:
            payload = reports.diagnosis_payload(project, services.diagnose_project(project))
            command.stdout.write(json.dumps(payload, indent=2))
        else:
            command.stdout.write(reports.text_report(project), ending="")
