"""``mlexec import-runs <project> <file>``: read runs from CSV or JSON, all or nothing.

CSV: one run per row. Columns ``name``, ``status``, ``cost`` and ``notes`` fill those fields;
``param.<name>`` columns are parameters; every other column is a metric (``train``,
``train_dev``, ``dev``, ``test`` are the split metric). Empty cells are skipped.

JSON: a list of runs (or ``{"runs": [...]}``), each ``{"name", "status", "params",
"metrics", "history", "cost", "artifacts", "notes"}`` as in the REST API.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from mlexec_app import services
from mlexec_app.exceptions import MlexecError
from mlexec_app.management.subcommands import Subcommand

RUN_FIELDS = {"name", "status", "params", "metrics", "history", "cost", "artifacts", "notes"}


class DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


class ImportRuns(Subcommand):
    name = "import-runs"
    help = __doc__ or ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("project", help="project id or slug")
        parser.add_argument("file", type=Path, help="a .csv or .json file")
        parser.add_argument("--dry-run", action="store_true", help="check, write nothing")

    def handle(self, command: BaseCommand, **options: Any) -> None:
        try:
            project = services.find_project(options["project"])
            runs = list(read_runs(options["file"]))
        except (MlexecError, OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        try:
            with transaction.atomic():
                for number, run in enumerate(runs, 1):
                    _record(project, number, run)
                if options["dry_run"]:
                    raise DryRun
        except DryRun:
            command.stdout.write(f"{len(runs)} run(s) are valid; nothing written (dry run).")
            return
        command.stdout.write(f"Imported {len(runs)} run(s) into {project.slug}.")


def _record(project: Any, number: int, run: dict[str, Any]) -> None:
    unknown = set(run) - RUN_FIELDS
    if unknown or not run.get("name"):
        raise CommandError(f"Run {number}: needs a name; unknown fields {sorted(unknown)}.")
    run = {"status": "finished", "source": "import", **run}
    try:
        services.record_run(project, **run)
    except MlexecError as exc:
        raise CommandError(
            f"Run {number} ({run['name']}): {exc.message} Nothing imported."
        ) from exc


def read_runs(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        yield from _json_runs(path)
    elif suffix == ".csv":
        yield from _csv_runs(path)
    else:
        raise ValueError(f"{path.name}: use a .csv or a .json file.")


def _json_runs(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    runs = data.get("runs") if isinstance(data, dict) else data
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise ValueError(f"{path.name}: expected a list of runs or {{'runs': [...]}}.")
    return runs


def _scalar(text: str) -> Any:
    """A CSV cell as the JSON value it reads as (number, boolean), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _csv_runs(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), 2):
            yield _csv_run(line, {k.strip(): (v or "").strip() for k, v in row.items() if k})


def _csv_run(line: int, row: dict[str, str]) -> dict[str, Any]:
    run: dict[str, Any] = {"params": {}, "metrics": {}}
    for column, cell in row.items():
        if cell == "":
            continue
        if column in ("name", "status", "notes"):
            run[column] = cell
        elif column.startswith("param."):
            run["params"][column.removeprefix("param.")] = _scalar(cell)
        else:
            run["cost" if column == "cost" else "metrics"] = _number(line, column, cell, run)
    return run


def _number(line: int, column: str, cell: str, run: dict[str, Any]) -> Any:
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"line {line}, column {column!r}: {cell!r} is not a number.") from None
    if column == "cost":
        return value
    return {**run["metrics"], column: value}
