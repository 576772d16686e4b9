"""The dataset export: conversations per second and peak memory (PostgreSQL).

``python -m bench export [--conversations N] [--turns T]``: N sessions (100,000 in the
issue's figure) of T question/answer turns, a quarter rated, are exported with
``sessions export-dataset`` to JSONL files; memory should stay flat as N grows (the export
streams), so run it at two sizes and compare the peak.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument(
        "--database",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    from tests.e2e.servers import postgres_database

    with postgres_database(args.database, f"bench_export_{os.getpid()}") as url:
        os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings")
        os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")  # DEBUG is off
        os.environ.pop("REDIS_URL", None)
        import django

        django.setup()
        try:
            run(args.conversations, args.turns)
        finally:
            from django.db import connections

            from sessions_app import dbexec

            dbexec.shutdown()
            connections.close_all()


def conversation(index: int, turns: int) -> list[dict]:
    events: list[dict] = []
    for turn in range(turns):
        run, user, bot = f"r{turn}", f"u{turn}", f"a{turn}"
        question = (
            f"Question {turn} of conversation {index}: write to me at user{index}@example.com"
        )
        events += [
            {"type": "TEXT_MESSAGE_START", "message": user, "data": {"role": "user"}},
            {"type": "TEXT_MESSAGE_CONTENT", "message": user, "data": {"delta": question}},
            {"type": "TEXT_MESSAGE_END", "message": user},
            {"type": "RUN_STARTED", "run": run, "agent": "bench"},
            {"type": "TEXT_MESSAGE_START", "message": bot, "run": run, "data": {"role": "assistant"}},
            {"type": "TEXT_MESSAGE_CONTENT", "message": bot, "run": run,
             "data": {"delta": f"Answer {turn} to {index}: " + "lorem ipsum " * 20}},
            {"type": "TEXT_MESSAGE_END", "message": bot, "run": run},
            {"type": "RUN_FINISHED", "run": run},
        ]  # fmt: skip
    return events


def run(count: int, turns: int) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from sessions_app import feedback, log, services
    from sessions_app.domain.dataset import Filters
    from sessions_app.export import Options, export_files
    from sessions_app.models import Session

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create(username="bench")
    started = time.perf_counter()
    for first in range(0, count, 1000):
        made = Session.objects.bulk_create(
            Session(name=f"c{index}", owner=user)
            for index in range(first, min(first + 1000, count))
        )
        for session in made:
            index = int(session.name[1:])
            log.append_sync(services.request(session.pk, conversation(index, turns)))
            if index % 4 == 0:
                rating = "up" if index % 8 == 0 else "down"
                log.append_sync(feedback.request("bench", session.pk, "a0", rating, None, "Fixed."))
    print(f"seeded {count} conversations of {turns} turns in {time.perf_counter() - started:.0f} s")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as folder:
        options = Options(filters=Filters(corrections=True))
        started = time.perf_counter()
        card = export_files(options, Path(folder) / "data.jsonl", sys.stdout)
        took = time.perf_counter() - started
        size = sum(path.stat().st_size for path in Path(folder).iterdir())
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"exported {card['conversations']} conversations ({size / 1e6:.0f} MB) in {took:.1f} s: "
        f"{card['conversations'] / took:,.0f} conversations/s; peak RSS {peak_after / 1024:.0f} MB "
        f"(+{(peak_after - peak_before) / 1024:.0f} MB during the export); "
        f"redactions {card['redactions']}, ratings {card['ratings']}"
    )
