"""Compaction of a finished session of 100,000 text deltas: storage and snapshot time, before
and after (PostgreSQL). ``python -m bench compaction [--deltas N]``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deltas", type=int, default=100_000)
    parser.add_argument(
        "--database",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    from tests.e2e.servers import postgres_database

    with postgres_database(args.database, f"bench_compaction_{os.getpid()}") as url:
        os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings")
        os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")  # DEBUG is off
        os.environ.pop("REDIS_URL", None)
        import django

        django.setup()
        try:
            run(args.deltas)
        finally:
            from django.db import connections

            from sessions_app import dbexec

            dbexec.shutdown()
            connections.close_all()


def table_bytes() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM FULL sessions_app_entry")
        cursor.execute("SELECT pg_total_relation_size('sessions_app_entry')")
        return int(cursor.fetchone()[0])


def run(deltas: int) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from sessions_app import log, services
    from sessions_app.models import Session

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create(username="bench")
    session = Session.objects.create(name="long-answer", owner=user)
    log.append_sync(services.request(session.pk, [{"type": "RUN_STARTED", "run": "r1"},
        {"type": "TEXT_MESSAGE_START", "run": "r1", "message": "m1", "data": {"role": "assistant"}}]))  # fmt: skip
    started = time.perf_counter()
    for first in range(0, deltas, 500):
        events = [{"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "message": "m1", "data": {"delta": f"tok{i} "}}
                  for i in range(first, min(first + 500, deltas))]  # fmt: skip
        log.append_sync(services.request(session.pk, events))
    log.append_sync(services.request(session.pk, [{"type": "TEXT_MESSAGE_END", "run": "r1", "message": "m1"},
                                                  {"type": "RUN_FINISHED", "run": "r1"}]))  # fmt: skip
    write_s = time.perf_counter() - started
    before_bytes = table_bytes()
    started = time.perf_counter()
    before = log.fold_session(session.pk).as_dict()
    fold_before = time.perf_counter() - started
    started = time.perf_counter()
    removed = log.compact(session.pk, Session.objects.get(pk=session.pk).head)
    compact_s = time.perf_counter() - started
    after_bytes = table_bytes()
    started = time.perf_counter()
    after = log.fold_session(session.pk).as_dict()
    fold_after = time.perf_counter() - started
    assert after == before, "compaction changed the fold"
    snapshot_bytes = len(str(Session.objects.get(pk=session.pk).snapshot).encode())
    print(f"deltas: {deltas}  written in {write_s:.1f} s")
    print(f"entries table: {before_bytes / 1e6:.1f} MB before, {after_bytes / 1e6:.2f} MB after "
          f"({removed} entries folded; snapshot {snapshot_bytes / 1e6:.2f} MB)")  # fmt: skip
    print(f"snapshot (fold) time: {fold_before * 1000:.0f} ms before, {fold_after * 1000:.1f} ms after; "
          f"compaction took {compact_s:.1f} s; the fold is identical")  # fmt: skip


if __name__ == "__main__":
    main()
