"""``python manage.py sessions <subcommand>``: the sessions_app tools that take subcommands.

Each subcommand is one entry of ``SUBCOMMANDS``: a function that adds its arguments to its own
parser and a function that runs it (add one for a new tool, nothing else changes).

- ``audit URL``: the delivery audit (docs/sessions/audit.md).
- ``export-dataset``: conversations as a fine-tuning dataset (docs/sessions/usage-feedback.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


@dataclass(frozen=True)
class Subcommand:
    help: str
    arguments: Callable[[CommandParser], None]
    run: Callable[[BaseCommand, dict[str, Any]], None]


def audit_arguments(parser: CommandParser) -> None:
    parser.add_argument("url", help="the chat endpoint to audit (http or https)")
    parser.add_argument(
        "--protocol",
        default="sse",
        help="sse (default), aisdk, agui, openai or ws: what the endpoint speaks",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar='"NAME: VALUE"',
        help='sent with every request, e.g. "Authorization: Bearer ..." (repeatable)',
    )
    parser.add_argument("--prompt", help="the user message each chat request sends")
    parser.add_argument(
        "--thread",
        default="",
        help="the conversation (thread or chat id) to use; a new one by default"
        " (this project's doors need an existing session's name)",
    )
    parser.add_argument(
        "--model", default="gpt-4o-mini", help="the model named in OpenAI-compatible requests"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per stream (60)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--html", metavar="FILE", help="also write the report as one HTML page")
    parser.add_argument(
        "--save",
        action="store_true",
        help="store the report: browse it in the admin beside the previous run's verdicts",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 unless every capability is green (for CI)",
    )


def audit_run(command: BaseCommand, options: dict[str, Any]) -> None:
    from sessions_app.audit import run_audit
    from sessions_app.audit.probes import AuditInputError, parse_header
    from sessions_app.audit.report import to_html, to_json, to_text

    try:
        headers = dict(parse_header(h) for h in options["header"])
    except AuditInputError as error:
        raise CommandError(str(error)) from error
    report = run_audit(
        options["url"],
        options["protocol"],
        headers=headers,
        prompt=options["prompt"],
        thread=options["thread"],
        model=options["model"],
        timeout=options["timeout"],
    )
    command.stdout.write(to_text(report, evidence=options["verbosity"] > 1), ending="")
    if options["json"]:
        Path(options["json"]).write_text(to_json(report), encoding="utf-8")
    if options["html"]:
        Path(options["html"]).write_text(to_html(report), encoding="utf-8")
    if options["save"]:
        from sessions_app.audit.store import save

        saved = save(report)
        command.stdout.write(f"saved as audit #{saved.pk} (admin: Sessions app > Audits)")
    if options["strict"] and not report.green:
        raise CommandError("the gap map is not all green", returncode=1)


def export_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--out", metavar="FILE", help="FILE.train.jsonl, .dev, .test (default: stdout)"
    )
    parser.add_argument("--since", metavar="DATE", help="sessions created on or after (ISO date)")
    parser.add_argument("--until", metavar="DATE", help="sessions created before (ISO date)")
    parser.add_argument("--agent", metavar="NAME", help="only answers by this agent")
    parser.add_argument("--finished-only", action="store_true", help="only finished runs' answers")
    parser.add_argument("--min-rating", choices=["up", "none"], help="up: rated up; none: no down")
    parser.add_argument("--corrections", action="store_true", help="corrections replace answers")
    parser.add_argument("--split", default="0.8,0.1,0.1", help="train,dev,test fractions")
    parser.add_argument("--seed", type=int, default=0, help="the split's seed (0)")
    parser.add_argument("--redact", metavar="DOTTED.PATH", help="your redaction function")
    parser.add_argument(
        "--card", metavar="FILE", help="the dataset card (.md: Markdown, else JSON)"
    )


def export_run(command: BaseCommand, options: dict[str, Any]) -> None:
    from django.utils.dateparse import parse_date, parse_datetime

    from sessions_app.domain.dataset import Filters, parse_split
    from sessions_app.export import Options, card_text, export_files

    def when(text: str | None) -> Any:
        if text is None:
            return None
        found = parse_datetime(text) or parse_date(text)
        if found is None:
            raise CommandError(f"not a date: {text!r} (use YYYY-MM-DD)")
        if not hasattr(found, "hour"):
            from datetime import UTC, datetime, time

            found = datetime.combine(found, time(), tzinfo=UTC)
        return found

    try:
        fractions = parse_split(options["split"])
    except ValueError as error:
        raise CommandError(str(error)) from error
    filters = Filters(options["finished_only"], options["min_rating"], options["corrections"],
                      options["agent"])  # fmt: skip
    run = Options(when(options["since"]), when(options["until"]), filters, fractions,
                  options["seed"], options["redact"])  # fmt: skip
    out = Path(options["out"]) if options["out"] else None
    card = export_files(run, out, command.stdout)
    if options["card"]:
        markdown = options["card"].endswith(".md")
        Path(options["card"]).write_text(card_text(card, markdown), encoding="utf-8")
    if out is not None:
        command.stderr.write(f"exported {card['conversations']} conversations: {card['splits']}")


SUBCOMMANDS: dict[str, Subcommand] = {
    "audit": Subcommand(
        "probe an existing AI chat endpoint: gap map, session-layer design, migration plan",
        audit_arguments,
        audit_run,
    ),
    "export-dataset": Subcommand(
        "sessions as a fine-tuning dataset: chat JSONL split by conversation, with a card",
        export_arguments,
        export_run,
    ),
}


class Command(BaseCommand):
    help = "sessions_app tools: " + ", ".join(SUBCOMMANDS)
    requires_system_checks: list[str] = []  # the audit talks to another site, not this one

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        for name, sub in SUBCOMMANDS.items():
            sub.arguments(subparsers.add_parser(name, help=sub.help, description=sub.help))

    def handle(self, *args: Any, **options: Any) -> None:
        SUBCOMMANDS[options["subcommand"]].run(self, options)
