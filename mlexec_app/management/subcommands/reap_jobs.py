"""``mlexec reap-jobs``: fail diagnostic jobs whose worker stopped sending heartbeats.

Listing jobs (API, admin) does this too; run it from cron when nobody looks.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand

from mlexec_app import jobs
from mlexec_app.management.subcommands import Subcommand


class ReapJobs(Subcommand):
    name = "reap-jobs"
    help = __doc__ or ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--stale-after", type=float, default=None,
            help="seconds without a heartbeat (default: MLEXEC_APP['JOB_STALE_AFTER'], 120)",
        )  # fmt: skip

    def handle(self, command: BaseCommand, **options: Any) -> None:
        failed = jobs.fail_stale_jobs(options["stale_after"])
        command.stdout.write(f"Failed {failed} stale diagnostic job(s).")
