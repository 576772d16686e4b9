"""``mlexec import-mlflow <project> --tracking-uri URI --experiment NAME``: runs from MLflow.

Reads one experiment through MLflow's own client (a local ``file:`` store, a database store
such as ``sqlite:///mlflow.db``, or a tracking server ``http://...``) and records each run
with its parameters, every metric's history, its status and its artifact location.
``--map dev=val_acc`` says which MLflow metric is the project's metric on a split (repeat
for ``train``, ``train_dev``, ``test``). A rerun updates the runs it imported before, never
duplicates them. ``--since 2026-01-31`` takes only runs started from then on. All or
nothing: a run that cannot be recorded stops the import and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from mlexec_app import services
from mlexec_app.exceptions import MlexecError
from mlexec_app.management.subcommands import Subcommand

SPLITS = ("train", "train_dev", "dev", "test")
# MLflow run statuses and ours.
STATUSES = {
    "RUNNING": "running",
    "SCHEDULED": "queued",
    "FINISHED": "finished",
    "FAILED": "failed",
    "KILLED": "cancelled",
}
PAGE = 500


class ImportMlflow(Subcommand):
    name = "import-mlflow"
    help = __doc__ or ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("project", help="project id or slug")
        parser.add_argument("--tracking-uri", required=True, help="MLflow tracking URI")
        parser.add_argument("--experiment", required=True, help="MLflow experiment name")
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="SPLIT=METRIC",
            help="the MLflow metric that is the project's metric on a split (dev=val_acc)",
        )
        parser.add_argument("--since", help="only runs started at or after (ISO date or time)")

    def handle(self, command: BaseCommand, **options: Any) -> None:
        mapping = parse_map(options["map"])
        since = parse_since(options["since"])
        try:
            project = services.find_project(options["project"])
        except MlexecError as exc:
            raise CommandError(str(exc)) from exc
        runs = read_experiment(options["tracking_uri"], options["experiment"], since)
        created = updated = 0
        with transaction.atomic():
            for mlflow_run in runs:
                fields = run_fields(mlflow_run, mapping)
                try:
                    _, new = services.import_run(project, **fields)
                except MlexecError as exc:
                    raise CommandError(
                        f"MLflow run {mlflow_run['id']} ({fields['name']}): {exc.message} "
                        "Nothing imported."
                    ) from exc
                created, updated = created + new, updated + (not new)
        command.stdout.write(
            f"Imported {len(runs)} MLflow run(s) into {project.slug}: "
            f"{created} new, {updated} updated."
        )


def parse_map(items: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in items:
        split, sep, metric = item.partition("=")
        if not sep or split not in SPLITS or not metric:
            raise CommandError(f"--map {item!r}: use SPLIT=METRIC with a split of {SPLITS}.")
        mapping[split] = metric
    return mapping


def parse_since(text: str | None) -> int | None:
    """Milliseconds since the epoch, as MLflow stores start times."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"--since {text!r}: use an ISO date or time (2026-01-31).") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def read_experiment(uri: str, experiment: str, since: int | None) -> list[dict[str, Any]]:
    """Every run of the experiment as plain data, oldest first (MLflow's client, read only)."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise CommandError('This needs MLflow: pip install "django-ai-stack[mlflow]".') from exc
    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise CommandError(f"No MLflow experiment {experiment!r} at {uri}.")
        query = f"attributes.start_time >= {since}" if since is not None else ""
        return [_plain(client, run) for run in _all_runs(client, found.experiment_id, query)]
    except MlflowException as exc:
        raise CommandError(f"MLflow: {exc.message}") from exc


def _all_runs(client: Any, experiment_id: str, query: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], query, max_results=PAGE, order_by=["start_time ASC"], page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _plain(client: Any, run: Any) -> dict[str, Any]:
    info, data = run.info, run.data
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(info.run_id, key)]
        for key in data.metrics
    }
    return {
        "id": info.run_id,
        "name": info.run_name or info.run_id,
        "status": info.status,
        "end_time": info.end_time,
        "artifact_uri": info.artifact_uri,
        "params": dict(data.params),
        "metrics": dict(data.metrics),
        "history": history,
        "notes": data.tags.get("mlflow.note.content", ""),
    }


def run_fields(run: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """What :func:`services.import_run` takes, from one MLflow run."""
    history: list[dict[str, Any]] = []
    metrics: dict[str, float] = {}
    for key, points in run["history"].items():
        # MLflow keeps NaN and infinities; a database column does not.
        finite = [(step, value) for step, value in points if math.isfinite(value)]
        targets = [split for split, name in mapping.items() if name == key]
        if key not in mapping:  # a metric MLflow calls "dev" is the split, unless mapped over
            targets.insert(0, key)
        for target in targets:
            history += [{"key": target, "value": v, "step": s} for s, v in finite]
            latest = run["metrics"].get(key)
            if latest is not None and math.isfinite(latest):
                metrics[target] = latest
    end = run["end_time"]
    return {
        "external_id": f"mlflow:{run['id']}",
        "name": run["name"][:200],
        "status": STATUSES.get(run["status"], "finished"),
        "params": {k: _scalar(v) for k, v in run["params"].items()},
        "metrics": metrics,
        "history": history,
        "artifacts": [{"name": "mlflow", "uri": run["artifact_uri"]}]
        if run["artifact_uri"]
        else [],
        "notes": run["notes"],
        "source": "mlflow",
        "finished_at": datetime.fromtimestamp(end / 1000, tz=UTC) if end else None,
    }


def _scalar(text: str) -> Any:
    """MLflow keeps parameters as text; "0.01" becomes 0.01, "adam" stays "adam"."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value
