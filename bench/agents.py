"""The agent runtime against one real server on PostgreSQL + Redis:

(a) from a user message's ack to its answer's ``RUN_STARTED`` on the log, p50 and p99, with
    10, 1,000 and 10,000 sessions existing, for the turn workers and, at 10 and 90 sessions,
    for the scanning agent the demo used before (it listed its sessions every second and
    followed each one);
(b) turns answered per second by 4 worker processes with a no-op handler;
(c) a worker killed (SIGKILL) mid-turn: time until another worker starts the turn again,
    against the lease.

``python -m bench agents [--messages 60] [--turns 2000] [--sizes 10,1000,10000]
[--server daphne|uvicorn]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LEASE = 3.0
SETUP = """
from django.contrib.auth import get_user_model
from sessions_app.access import mint_token
from sessions_app.keys import create_key
from sessions_app.models import Session
user, _ = get_user_model().objects.get_or_create(username="alice")
robot, _ = get_user_model().objects.get_or_create(username="robot")
have = set(Session.objects.filter(name__startswith="s-").values_list("name", flat=True))
Session.objects.bulk_create(
    [Session(name=f"s-{{i}}", owner=user) for i in range({sessions}) if f"s-{{i}}" not in have],
    batch_size=2000,
)
print(mint_token(user))
print(create_key(robot, "workers", agents="*")[1])
print(create_key(user, "alice", all_sessions=True)[1])
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.1f} ms, p99 {pct(values, 0.99) * 1000:.1f} ms"


async def latency(base: str, token: str, count: int, names: list[str]) -> list[float]:
    """Ack of a user message to the RUN_STARTED answering it, seen by the sending device."""
    from sessions_app.client import SessionsClient

    found: list[float] = []
    async with SessionsClient(base, token=token) as device:
        for i in range(count):
            session = await device.session(names[i % len(names)])
            started = asyncio.get_running_loop().create_future()

            async def watch(session=session, started=started) -> None:
                async for event in session.events():
                    if event["type"] == "RUN_STARTED" and not started.done():
                        started.set_result(time.perf_counter())
                        return

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0)
            await session.send_message(f"question {i}")
            acked = time.perf_counter()
            found.append(await asyncio.wait_for(started, 30) - acked)
            watcher.cancel()
            await asyncio.sleep(0.05)  # let the answer finish: one turn of a session at a time
    return found


async def scanning_agent(base: str, key: str, stop: asyncio.Event) -> None:
    """The demo agent before the runtime: list sessions every second, follow each one."""
    from sessions_app.client import SessionsClient

    async with SessionsClient(base, api_key=key) as client:
        watched: dict[str, asyncio.Task[None]] = {}

        async def follow(name: str) -> None:
            from sessions_app.client.session import CAUGHT_UP

            session = await client.session(name, after="-1", inbox=True)
            live, unanswered = False, False
            async for event in session.events():
                kind = event["type"]
                asked = kind == "TEXT_MESSAGE_START" and event["data"].get("role") == "user"
                if kind == CAUGHT_UP:
                    live = True
                elif kind == "RUN_STARTED":
                    unanswered = False
                elif asked:
                    unanswered = True
                if live and unanswered:
                    unanswered = False
                    async with session.run(agent="assistant") as run:
                        await run.text("ok")

        while not stop.is_set():
            for info in (await client.rest("GET", "/", params={"limit": 500}))["items"]:
                if info["name"] not in watched:
                    watched[info["name"]] = asyncio.create_task(follow(info["name"]))
            await asyncio.sleep(1.0)
        for task in watched.values():
            task.cancel()


def workers(env: dict[str, str], base: str, key: str, count: int, **extra: str) -> list[Any]:
    args = [sys.executable, "manage.py", "run_agents", "tests.e2e.runtime_agents", "--url", base,
            "--api-key", key, "--concurrency", os.environ.get("BENCH_CONCURRENCY", "48")]  # fmt: skip
    return [
        subprocess.Popen(
            args,
            cwd=ROOT,
            env={**env, **extra},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(count)
    ]


def stop_all(procs: list[Any]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def patch_agent(base: str, key: str, names: list[str], agent: str) -> None:
    body = {"metadata": {"turns": {"agent": agent}}}
    each(base, key, [("PATCH", f"/api/sessions/{n}", body) for n in names])


def each(base: str, key: str, calls: list[tuple[str, str, Any]]) -> None:
    """``_each`` from sync code, also inside the baseline's event loop (in a thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_each(base, key, calls))
        return
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _each(base, key, calls)).result()


async def _each(base: str, key: str, calls: list[tuple[str, str, Any]], at_once: int = 16) -> None:
    """The setup's requests, 16 at a time (one at a time, 4,000 messages took three minutes
    before anything was measured)."""
    limit = asyncio.Semaphore(at_once)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:

        async def call(method: str, path: str, body: Any) -> None:
            async with limit:
                (await http.request(method, path, json=body)).raise_for_status()

        await asyncio.gather(*(call(*c) for c in calls))


def open_turns(env: dict[str, str]) -> int:
    """The no-op agent's turns not done yet: one query on the site's PostgreSQL database.
    (It used to start ``manage.py shell`` every 0.2 s: a Django process's start-up, about a
    second of CPU, beside the server and the workers on two cores.)"""
    import psycopg

    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM sessions_app_turn WHERE agent = 'noop' "
            "AND state IN ('queued', 'claimed')"
        ).fetchone()
    return int(row[0]) if row else 0


class CpuMeter:
    """CPU seconds of the server, the workers and the site database's PostgreSQL backends,
    between two ``snap()`` calls (Redis, shared with everything else, is left out)."""

    def __init__(self, server: int, workers: list[int], database: str) -> None:
        self.groups = {"server": [server], "workers": workers}
        self.database = database
        self.marks: list[dict[str, float]] = []

    def _backends(self) -> list[int]:
        import psutil

        found = []
        for proc in psutil.process_iter(["cmdline"]):
            line = " ".join(proc.info["cmdline"] or [])
            if line.startswith("postgres:") and f" {self.database} " in line:
                found.append(proc.pid)
        return found

    def snap(self) -> None:
        import psutil

        mark: dict[str, float] = {}
        for group, pids in {**self.groups, "postgres": self._backends()}.items():
            for pid in pids:
                try:
                    times = psutil.Process(pid).cpu_times()
                except psutil.Error:
                    continue
                mark[f"{group}:{pid}"] = times.user + times.system
        self.marks.append(mark)

    def spent(self) -> dict[str, float]:
        """CPU seconds per group from the first mark to the last (a backend that came up in
        between counts from zero)."""
        first, last = self.marks[0], self.marks[-1]
        out: dict[str, float] = {"server": 0.0, "workers": 0.0, "postgres": 0.0}
        for key, value in last.items():
            out[key.split(":")[0]] += value - first.get(key, 0.0)
        return out


def dispatch_rate(
    env: dict[str, str], base: str, key: str, own: str, turns: int, server: int = 0
) -> tuple[float, float]:
    """4 worker processes answer ``turns`` turns queued beforehand (one per session)."""
    names = [f"s-{i}" for i in range(turns)]
    patch_agent(base, own, names, "noop")
    each(base, own, [("POST", f"/api/sessions/{n}/messages", {"text": "go"}) for n in names])
    procs = workers(env, base, key, 4)
    meter = CpuMeter(server, [p.pid for p in procs], env["DATABASE_URL"].rsplit("/", 1)[-1])
    started = time.perf_counter()
    measured_from = None  # open turns when the CPU count started (the workers are up)
    try:
        while left := open_turns(env):
            if measured_from is None and left <= turns - min(100, turns // 4):
                meter.snap()
                measured_from = left
            time.sleep(0.2)
        took = time.perf_counter() - started
        meter.snap()
    finally:
        stop_all(procs)
    print(f"    answered exactly once: {answered_once(env)}")
    if measured_from:
        spent = meter.spent()
        per = ", ".join(f"{k} {v / measured_from * 1000:.2f}" for k, v in spent.items())
        print(f"    CPU ms per turn over the last {measured_from} turns: {per}; "
              f"total {sum(spent.values()) / measured_from * 1000:.2f}")  # fmt: skip
    print(f"    steady rate (first to last turn done, workers' start-up left out): {steady(env)}")
    print(f"    claim -> turn done: {claim_to_done(env)}")
    print(f"    group commits that ended turns: {commits(env)}")
    return all_up_rate(env), turns / took


def commits(env: dict[str, str]) -> str:
    """How the writer's group commits carried the turns: a commit stamps the turns it ends with
    one ``ended_at``, so the distinct stamps are the commits, and their spacing the writer's
    cycle."""
    import psycopg

    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM ended_at), count(*) FROM sessions_app_turn "
            "WHERE agent = 'noop' AND state = 'done' GROUP BY ended_at ORDER BY ended_at"
        ).fetchall()
    if len(rows) < 2:
        return "n/a"
    stamps = [float(row[0]) for row in rows]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    turns = sum(int(row[1]) for row in rows)
    return (
        f"{len(rows)}, {turns / len(rows):.1f} turns each, one every "
        f"{statistics.median(gaps) * 1000:.1f} ms (median)"
    )


def claim_to_done(env: dict[str, str]) -> str:
    """Each turn's time from its claim to its end (the answer committed), from the rows."""
    import psycopg

    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM ended_at - claimed_at) FROM sessions_app_turn "
            "WHERE agent = 'noop' AND state = 'done'"
        ).fetchall()
    took = [float(row[0]) for row in rows]
    if not took:
        return "n/a"
    return ", ".join(f"p{q} {pct(took, q / 100) * 1000:.0f} ms" for q in (10, 50, 90, 99))


def steady(env: dict[str, str]) -> str:
    import psycopg

    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(ended_at) - min(ended_at)), "
            "count(DISTINCT (worker, claimed_at)) "
            "FROM sessions_app_turn WHERE agent = 'noop' AND state = 'done'"
        ).fetchone()
    done, span, claims = (int(row[0]), float(row[1] or 0), int(row[2])) if row else (0, 0.0, 0)
    if span <= 0:
        return "n/a"
    # A claim stamps its turns with one claimed_at and its worker's name.
    per = f"; {claims} claims, {done / max(claims, 1):.1f} turns each"
    return f"{(done - 1) / span:,.0f} turns/s over {span:.1f} s{per}; {all_up(env)}"


def all_up(env: dict[str, str]) -> str:
    """The rate once every worker has claimed: from the last worker's first claim to the last
    turn's end. Workers come up seconds apart on a loaded machine (a Python process importing
    the site), and until the last one claims, fewer than 4 answer: "first to last" counts that
    ramp."""
    row = _all_up(env)
    if row is None:
        return "all workers up: n/a"
    workers, done, span, spread = row
    return (
        f"with all {workers} workers up: {done / span:,.0f} turns/s ({done} turns over "
        f"{span:.1f} s; their first claims {spread:.1f} s apart)"
    )


def all_up_rate(env: dict[str, str]) -> float:
    """The figure part (b)'s goal is about: turns a second with all 4 workers up."""
    row = _all_up(env)
    return row[1] / row[2] if row is not None else 0.0


def _all_up(env: dict[str, str]) -> tuple[int, int, float, float] | None:
    import psycopg

    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute(
            "WITH firsts AS (SELECT worker, min(claimed_at) AS first FROM sessions_app_turn "
            "WHERE agent = 'noop' AND state = 'done' GROUP BY worker), "
            "up AS (SELECT max(first) AS at, min(first) AS early, count(*) AS workers "
            "FROM firsts) "
            "SELECT up.workers, count(t.id), extract(epoch FROM max(t.ended_at) - up.at), "
            "extract(epoch FROM up.at - up.early) "
            "FROM up, sessions_app_turn t WHERE t.agent = 'noop' AND t.state = 'done' "
            "AND t.ended_at >= up.at GROUP BY up.workers, up.at, up.early"
        ).fetchone()
    if not row or not row[2]:
        return None
    return int(row[0]), int(row[1]), float(row[2]), float(row[3])


def answered_once(env: dict[str, str]) -> str:
    """Every turn done, with one finished run each (a lost attempt's run may precede it)."""
    from tests.e2e.servers import manage_output

    code = (
        "from django.db.models import Count, Q\n"
        "from sessions_app.models import Turn\n"
        "rows = Turn.objects.annotate(ok=Count('runs', filter=Q(runs__status='finished')))\n"
        "print(rows.count(), rows.filter(state='done', ok=1).count(), rows.filter(ok__gt=1).count())"
    )
    total, good, twice = manage_output("shell", "-c", code, env=env).split()[-3:]
    return f"{good} of {total} turns done with one finished run; {twice} with more than one"


async def takeover(env: dict[str, str], base: str, key: str, own: str, token: str) -> float:
    """Kill the worker answering a turn; time until another starts its second attempt."""
    from sessions_app.client import SessionsClient

    patch_agent(base, own, ["s-0"], "echo")  # (b) left it to the no-op agent
    slow = workers(env, base, key, 1, RUNTIME_AGENT_PACE="1.0")[0]
    spare: list[Any] = []
    try:
        async with SessionsClient(base, token=token) as device:
            session = await device.session("s-0", after="now", inbox=True)
            await session.send_message("a long answer please " * 5)
            async for event in session.events():
                if event["type"] == "TEXT_MESSAGE_CONTENT" and event.get("run"):
                    break
            slow.send_signal(signal.SIGKILL)
            killed = time.perf_counter()
            spare = workers(env, base, key, 1)
            async for event in session.events():
                if event["type"] == "RUN_STARTED" and event["run"].endswith("-2"):
                    return time.perf_counter() - killed
    finally:
        stop_all([slow, *spare])
    raise RuntimeError("no second attempt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--turns", type=int, default=4000)
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--parts", default="a,b,c", help="which measurements to run")
    parser.add_argument("--server", choices=("daphne", "uvicorn"), default="daphne")
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/test")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    from tests.e2e.servers import DaphneProcess, manage_output, site_database

    print(f"load average before: {os.getloadavg()[0]:.2f}")
    settings = {"TURN_LEASE_SECONDS": LEASE, "TURNS": {"agent": "echo"},
                "MAX_SESSIONS_PER_USER": None}  # fmt: skip
    with site_database(Path(tempfile.mkdtemp()), "benchagents") as env:
        env["SESSIONS_APP_JSON"] = json.dumps(settings)
        env["RUNTIME_AGENT_PACE"] = "0"
        with DaphneProcess(env, server=args.server) as server:
            base = server.base
            parts = set(args.parts.split(","))
            for size in [int(s) for s in args.sizes.split(",")] if "a" in parts else [args.turns]:
                token, key, own = manage_output(
                    "shell", "-c", SETUP.format(sessions=size), env=env
                ).split()[-3:]
                names = [f"s-{i}" for i in range(min(size, 10))]
                if "a" not in parts:
                    continue
                procs = workers(env, base, key, 1)
                try:
                    asyncio.run(latency(base, token, 1, names))  # the worker has started
                    found = asyncio.run(latency(base, token, args.messages, names))
                finally:
                    stop_all(procs)
                print(f"(a) {size:>6} sessions, turn workers:    ack -> RUN_STARTED {ms(found)}")
                if size == 10:
                    for existing in (10, 90):
                        manage_output("shell", "-c", SETUP.format(sessions=existing), env=env)
                        found = asyncio.run(baseline(base, token, own, existing))
                        print(
                            f"(a) {existing:>6} sessions, scanning agent: ack -> RUN_STARTED {ms(found)}"
                        )
            if "b" in parts:
                pid = server.proc.pid if server.proc is not None else 0
                up, whole = dispatch_rate(env, base, key, own, args.turns, pid)
                print(
                    f"(b) {args.turns} turns, 4 worker processes, no-op handler: {up:,.0f} "
                    f"turns/s with all 4 up (goal >= 1,000); {whole:,.0f} counting their start-up"
                )
            if "c" not in parts:
                return
            took = asyncio.run(takeover(env, base, key, own, token))
            print(f"(c) worker killed mid-turn: restarted by another after {took:.2f} s "
                  f"(lease {LEASE:.0f} s, goal <= {2 * LEASE:.0f} s)")  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")


async def baseline(base: str, token: str, own: str, existing: int, count: int = 5) -> list[float]:
    names = [f"s-{i}" for i in range(existing)]
    patch_agent(base, own, names, "nobody")  # no turn worker answers these
    stop = asyncio.Event()
    agent = asyncio.create_task(scanning_agent(base, own, stop))
    await asyncio.sleep(3)  # it has found the sessions
    try:
        # A new session each time: what the scanning agent needs up to a second to notice.
        found = []
        from sessions_app.client import SessionsClient

        async with SessionsClient(base, api_key=own) as creator:
            for i in range(count):
                name = f"new-{existing}-{i}-{time.time_ns()}"
                await creator.rest(
                    "POST", "/", json={"name": name, "metadata": {"turns": {"agent": "nobody"}}}
                )
                found += await latency(base, token, 1, [name])
        return found
    finally:
        stop.set()
        await agent
        patch_agent(base, own, names, "echo")


if __name__ == "__main__":
    main()
