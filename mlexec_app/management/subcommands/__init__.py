"""Subcommands of ``manage.py mlexec``, one small module each.

To add one, drop a module in this package (or a ``_name.py`` module next to the ``mlexec``
command in ``management/commands/``, which Django itself does not load as a command) that
defines a :class:`Subcommand` subclass with a ``name``, a ``help``, ``add_arguments`` and
``handle``. ``manage.py mlexec`` finds it on its own; nothing else needs editing.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from types import ModuleType
from typing import Any

from django.core.management.base import BaseCommand


class Subcommand:
    """One ``mlexec <name>`` subcommand."""

    name: str = ""
    help: str = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the subcommand's own arguments."""

    def handle(self, command: BaseCommand, **options: Any) -> None:
        """Do the work; write through ``command.stdout``; raise ``CommandError`` on failure."""
        raise NotImplementedError


def _modules() -> list[ModuleType]:
    here = importlib.import_module(__name__)
    commands = importlib.import_module("mlexec_app.management.commands")
    found = [
        importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(here.__path__)
    ]
    found += [
        importlib.import_module(f"{commands.__name__}.{m.name}")
        for m in pkgutil.iter_modules(commands.__path__)
        if m.name.startswith("_")
    ]
    return found


def discover() -> dict[str, Subcommand]:
    """Every subcommand defined in the subcommand modules, by name."""
    found: dict[str, Subcommand] = {}
    for module in _modules():
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Subcommand)
                and value.__module__ == module.__name__
                and value.name
            ):
                found[value.name] = value()
    return dict(sorted(found.items()))
