"""The dataset export: conversations per second and peak memory (PostgreSQL).

``python -m bench export [--conversations N] [--turns T]``: N sessions (100,000 in the
issue's figure) of T question/answer turns, a quarter rated, are exported with
``sessions export-dataset`` to JSONL files; memory should stay flat as N grows (the export
streams), so run it at two sizes and compare the peak.

``--keep NAME`` seeds a database NAME (next to ``--database``) only if it holds no sessions
yet and keeps it afterwards, so that two versions of the export can be timed on the same
data without seeding again; ``--profile FILE`` writes a cProfile of the export.
``--stages [--deltas N]`` needs no database: the CPU per conversation of each stage of the
export (parse, fold, conversation, redaction with encoding), with answers of N text events.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
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
    parser.add_argument("--keep", metavar="NAME", help="seed once into database NAME, keep it")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the export")
    parser.add_argument(
        "--stages", action="store_true", help="no database: CPU per conversation of each stage"
    )
    parser.add_argument(
        "--deltas", type=int, default=1, help="with --stages: text events an answer (streamed)"
    )
    args = parser.parse_args()
    if args.stages:
        stages(min(args.conversations, 10_000), args.turns, args.deltas)
        return
    from tests.e2e.servers import postgres_database

    if args.keep:
        database = kept_database(args.database, args.keep)
    else:
        database = postgres_database(args.database, f"bench_export_{os.getpid()}")
    with database as url:
        os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings")
        os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")  # DEBUG is off
        os.environ.pop("REDIS_URL", None)
        import django

        django.setup()
        try:
            run(args.conversations, args.turns, args.profile)
        finally:
            from django.db import connections

            from sessions_app import dbexec

            dbexec.shutdown()
            connections.close_all()


def stages(count: int, turns: int, deltas: int = 1) -> None:
    """The export's stages in memory, without a profiler's distortion: CPU time per
    conversation to parse the stored events (one JSON array a conversation, as PostgreSQL
    hands them over), fold them, build the conversation, and redact, encode and deduplicate
    it. Each pass runs the stages up to one of them, a conversation at a time (holding every
    conversation's events at once made the garbage collector's passes part of the figures);
    a stage's cost is the difference between two passes."""
    import orjson

    from sessions_app.domain.dataset import Exporter, Filters
    from sessions_app.domain.dataset import conversation as build
    from sessions_app.domain.events import encode_event
    from sessions_app.domain.fold import SessionState, apply, apply_all

    arrays = [
        ("[" + ",".join(encode_event(e, 1) for e in conversation(i, turns, deltas)) + "]").encode()
        for i in range(count)
    ]
    filters = Filters(corrections=True)

    def upto(last: int) -> float:  # the stages up to ``last``, streamed
        exporter = Exporter(encode=orjson.dumps)
        started = time.process_time()
        for index, array in enumerate(arrays):
            events = orjson.loads(array)
            if last == 0:
                continue
            state = SessionState()
            if last == -1:  # the fold event by event, as the export did before apply_all
                for event in events:
                    apply(state, 1, event)
                continue
            apply_all(state, 1, events)
            if last == 1:
                continue
            found = build(state, filters)
            if last == 2:
                continue
            exporter.take(f"c{index}", "2026-01-01", found)
        return time.process_time() - started

    one_by_one = upto(-1)
    totals = [upto(last) for last in range(4)]
    names = ("parse", "fold", "conversation", "redact+encode+dedup")
    costs = [(b - a) / count * 1e3 for a, b in zip([0.0, *totals], totals, strict=False)]
    print(
        f"CPU per conversation ({count} of {turns} turns, {deltas} text events an answer): "
        + ", ".join(f"{n} {c:.3f} ms" for n, c in zip(names, costs, strict=True))
        + f"; total {sum(costs):.3f} ms ({1e3 / sum(costs):,.0f} conversations/s on one core); "
        f"the fold event by event (apply) {(one_by_one - totals[0]) / count * 1e3:.3f} ms"
    )


@contextlib.contextmanager
def kept_database(base_url: str, name: str) -> Iterator[str]:
    """Database ``name`` next to ``base_url``'s, created if missing and never dropped."""
    import psycopg

    with psycopg.connect(base_url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{base_url.rsplit('/', 1)[0]}/{name}"


def conversation(index: int, turns: int, deltas: int = 1) -> list[dict]:
    """A conversation's events; ``deltas`` splits each answer into that many text events,
    as a streamed answer is logged (the seeded data has one)."""
    events: list[dict] = []
    for turn in range(turns):
        run, user, bot = f"r{turn}", f"u{turn}", f"a{turn}"
        question = (
            f"Question {turn} of conversation {index}: write to me at user{index}@example.com"
        )
        answer = f"Answer {turn} to {index}: " + "lorem ipsum " * 20
        step = -(-len(answer) // deltas)
        events += [
            {"type": "TEXT_MESSAGE_START", "message": user, "data": {"role": "user"}},
            {"type": "TEXT_MESSAGE_CONTENT", "message": user, "data": {"delta": question}},
            {"type": "TEXT_MESSAGE_END", "message": user},
            {"type": "RUN_STARTED", "run": run, "agent": "bench"},
            {"type": "TEXT_MESSAGE_START", "message": bot, "run": run, "data": {"role": "assistant"}},
            *({"type": "TEXT_MESSAGE_CONTENT", "message": bot, "run": run,
               "data": {"delta": answer[at:at + step]}} for at in range(0, len(answer), step)),
            {"type": "TEXT_MESSAGE_END", "message": bot, "run": run},
            {"type": "RUN_FINISHED", "run": run},
        ]  # fmt: skip
    return events


def run(count: int, turns: int, profile: str | None = None) -> None:
    from django.core.management import call_command

    from sessions_app.domain.dataset import Filters
    from sessions_app.export import Options, export_files
    from sessions_app.models import Session

    call_command("migrate", verbosity=0)
    if Session.objects.exists():
        print(f"reusing the {Session.objects.count()} sessions already seeded")
    else:
        seed(count, turns)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as folder:
        options = Options(filters=Filters(corrections=True))
        profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not waits
        started, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        card = export_files(options, Path(folder) / "data.jsonl", sys.stdout)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        if profiler and profile:
            profiler.disable()
            profiler.dump_stats(profile)
        size = sum(path.stat().st_size for path in Path(folder).iterdir())
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"exported {card['conversations']} conversations ({size / 1e6:.0f} MB) in {took:.1f} s: "
        f"{card['conversations'] / took:,.0f} conversations/s; peak RSS {peak_after / 1024:.0f} MB "
        f"(+{(peak_after - peak_before) / 1024:.0f} MB during the export); "
        f"the exporting process's CPU time {cpu:.1f} s; "
        f"redactions {card['redactions']}, ratings {card['ratings']}"
    )


def seed(count: int, turns: int) -> None:
    """The sessions, their entries (the write path's own insert: COPY of the encoded events)
    and their runs, 1,000 sessions a transaction. Appending them through the trackers, run by
    run, seeded about 20 sessions a second on the shared machine: hours for 100,000."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from sessions_app import log, services
    from sessions_app.domain.events import encode_event
    from sessions_app.domain.judgement import feedback_event
    from sessions_app.models import Run, Session

    user = get_user_model().objects.create(username="bench")
    started = time.perf_counter()
    for first in range(0, count, 1000):
        now = timezone.now()
        made: dict[int, list] = {}
        for index in range(first, min(first + 1000, count)):
            items = services.build_items(conversation(index, turns))
            if index % 4 == 0:
                rating = "up" if index % 8 == 0 else "down"
                value = {"message": "a0", "rating": rating, "correction": "Fixed."}
                event = feedback_event(value, "bench")
                items.append(log.Item(encode_event(event, log.now_ms()), "CUSTOM", ""))
            made[index] = items
        with transaction.atomic():
            sessions = Session.objects.bulk_create(
                Session(name=f"c{index}", owner=user, head=len(items))
                for index, items in made.items()
            )
            runs = []
            for session in sessions:
                items = made[int(session.name[1:])]
                log.seed(session.pk, 1, items, now)
                runs += [
                    Run(session=session, run_id=item.run, agent="bench", status="finished",
                        started_seq=seq, ended_at=now)
                    for seq, item in enumerate(items, start=1)
                    if item.type == "RUN_STARTED"
                ]  # fmt: skip
            Run.objects.bulk_create(runs)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # the planner's statistics, as a database in use has them
    print(f"seeded {count} conversations of {turns} turns in {time.perf_counter() - started:.0f} s")
