"""``manage.py mlexec <subcommand>``: ML project execution from the command line.

Subcommands live in small modules and are found automatically; to add one, see
:mod:`mlexec_app.management.subcommands` (a module there, or ``commands/_<name>.py``, with a
``Subcommand`` subclass). Built in: ``diagnose`` and ``import-runs``.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mlexec_app.management.subcommands import discover


class Command(BaseCommand):
    help = "ML project execution: diagnose a project, import runs, and more (see --help)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", metavar="subcommand")
        for name, subcommand in discover().items():
            child = sub.add_parser(
                name,
                help=subcommand.help,
                description=subcommand.help,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            subcommand.add_arguments(child)

    def handle(self, *args: Any, **options: Any) -> None:
        name = options.pop("subcommand", None)
        subcommands = discover()
        if name not in subcommands:
            raise CommandError(f"Name a subcommand: {', '.join(subcommands)}.")
        subcommands[name].handle(self, **options)
