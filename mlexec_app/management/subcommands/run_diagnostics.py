"""``mlexec run-diagnostics <project> --dataset digits``: train models for evidence.

Runs the diagnostics in this process with a progress bar (Ctrl-C cancels the job), or with
``--queue`` hands the job to the Django Tasks backend (``manage.py db_worker`` runs it).
The job, its baseline Run, its ErrorAnalysis and its data assessment are stored as if started
from the API or the admin. ``--plots DIR`` writes the SVG plots there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mlexec_app import job_runner, jobs, services
from mlexec_app.exceptions import MlexecError
from mlexec_app.management.subcommands import Subcommand
from mlexec_app.models import DiagnosticJob, RunStatus

BAR_WIDTH = 30
# Stored results lose key order on PostgreSQL (jsonb): print the splits in this order.
SPLITS = ("train", "train_dev", "dev", "test")


class RunDiagnostics(Subcommand):
    name = "run-diagnostics"
    help = __doc__ or ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("project", help="project id or slug")
        parser.add_argument(
            "--dataset", default="digits", help="digits, a .csv/.npz file, or a dotted path"
        )
        parser.add_argument(
            "--diagnostics",
            default="label_issues,learning_curve,baseline,slices",
            help=f"comma-separated, from: {', '.join(jobs.DIAGNOSTIC_CHOICES)}",
        )
        parser.add_argument(
            "--model", default="mlp", help="logistic, mlp, cnn, or a dotted factory path"
        )
        parser.add_argument("--hidden", default="128", help="MLP hidden sizes, e.g. 256,128")
        parser.add_argument("--epochs", type=int, default=None)
        parser.add_argument("--label", default="label", help="label column of a CSV")
        parser.add_argument("--slice-column", default=None, help="column to slice errors by")
        parser.add_argument("--target-error", type=float, default=None, help="default: project's")
        parser.add_argument("--queue", action="store_true", help="enqueue, do not run here")
        parser.add_argument("--plots", type=Path, default=None, help="write SVG plots here")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, command: BaseCommand, **options: Any) -> None:
        try:
            project = services.find_project(options["project"])
            job = jobs.create_job(
                project, options["dataset"], diagnostics=_names(options["diagnostics"]),
                params=_params(options), trusted=True,  # the site owner names anything
            )  # fmt: skip
        except MlexecError as exc:
            raise CommandError(exc.message) from exc
        if options["queue"]:
            job = jobs.enqueue_job(job)
            command.stdout.write(f"Job {job.pk} {job.status} (task {job.task_id}).")
            return
        job = _run_here(command, job)
        if job.status != RunStatus.FINISHED:
            raise CommandError(f"Job {job.pk} {job.status}. {job.error}".strip())
        if options["plots"]:
            _write_plots(command, job, options["plots"])
        if options["json"]:
            command.stdout.write(json.dumps(job.result, indent=2))
        else:
            command.stdout.write(summary(job))


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _params(options: dict[str, Any]) -> dict[str, Any]:
    model = options["model"]
    spec: dict[str, Any] = (
        {"kind": model}
        if model in ("logistic", "mlp", "cnn")
        else {"kind": "factory", "factory": model}
    )
    if model == "mlp":
        spec["hidden"] = [int(h) for h in options["hidden"].split(",") if h]
    params: dict[str, Any] = {"model": spec, "label": options["label"]}
    if options["epochs"]:
        params["train"] = {"epochs": options["epochs"]}
    if options["slice_column"]:
        params["slice_column"] = options["slice_column"]
    if options["target_error"] is not None:
        params["target_error"] = options["target_error"]
    return params


def _run_here(command: BaseCommand, job: DiagnosticJob) -> DiagnosticJob:
    bar = ProgressBar(command.stderr)
    try:
        job_runner.execute(job.pk, listener=bar.update)
    except KeyboardInterrupt:
        # Ctrl-C lands inside a training step, not at a cancel check: record the cancel here.
        DiagnosticJob.objects.filter(pk=job.pk).update(
            status=RunStatus.CANCELLED, cancel_requested=True
        )
    except Exception:  # noqa: BLE001  (the job row holds the error; report it below)
        pass
    finally:
        bar.close()
    job.refresh_from_db()
    return job


class ProgressBar:
    """``[#######-----------]  35%  learning_curve  epoch 12/40`` redrawn on one line."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.last = ""

    def update(self, event: dict[str, Any]) -> None:
        fraction = float(event.get("fraction", 0.0))
        filled = int(round(fraction * BAR_WIDTH))
        step = event.get("step", "")
        detail = f"{step} {event['done']}/{event['total']}" if "total" in event else step
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = f"[{bar}] {fraction:4.0%}  {event.get('stage', '')}  {detail}"
        if self.tty:
            self.out.write("\r" + line.ljust(len(self.last)), ending="")
        elif line.split("]")[0] != self.last.split("]")[0]:  # a log line per visible change
            self.out.write(line)
        self.last = line

    def close(self) -> None:
        if self.tty and self.last:
            self.out.write("")


def summary(job: DiagnosticJob) -> str:
    """A readable account of what the job found."""
    result = job.result
    lines = [f"Diagnostic job {job.pk} on {job.dataset}: {job.status}."]
    if "label_issues" in result:
        issues = result["label_issues"]
        lines.append(
            f"Label issues: {issues['n_issues']} of {issues['n_examples']} labels look wrong "
            f"(noise rate {issues['noise_rate']:.1%})."
        )
        for issue in issues["issues"][:5]:
            lines.append(
                f"  row {issue['index']}: labelled {issue['given']}, likely {issue['suggested']} "
                f"(p={issue['suggested_probability']:.2f})"
            )
    if "learning_curve" in result:
        curve = result["learning_curve"]
        lines.append(f"Learning curve: {curve['verdict']}. {curve['reason']}")
    if "baseline" in result:
        errors = result["baseline"]["errors"]
        lines.append("Baseline error: " + ", ".join(f"{k} {errors[k]:.3f}" for k in SPLITS))
        lines.append(
            f"Recorded as run {job.run_id}; `mlexec diagnose {job.project.slug}` reads it."
        )
    if "slices" in result and result["slices"]["slices"]:
        worst = result["slices"]["slices"][0]
        lines.append(
            f"Worst slice by {result['slices']['by']}: {worst['name']} "
            f"({worst['share_of_errors']:.0%} of dev errors)."
        )
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.get("timings", {}).items())
    lines.append(f"Time: {timings}.")
    return "\n".join(lines)


def _write_plots(command: BaseCommand, job: DiagnosticJob, folder: Path) -> None:
    from mlexec_app.diagnostics import plots

    folder.mkdir(parents=True, exist_ok=True)
    result = job.result
    if "learning_curve" in result:
        (folder / "learning-curve.svg").write_text(
            plots.learning_curve_svg(result["learning_curve"])
        )
    issues = result.get("label_issues")
    if issues and issues.get("image_shape"):
        svg = plots.label_issue_images_svg(issues["issues"], issues["image_shape"])
        (folder / "label-issues.svg").write_text(svg)
    command.stdout.write(f"Plots written to {folder}.")
