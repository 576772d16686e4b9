"""Benchmark: what an idle subscribed socket costs, and a join storm (issue #25).

Run from the repository root (PostgreSQL and Redis must be running)::

    .venv/bin/python -m bench idle_sockets                  # 10,000 sockets, about 15 minutes
    .venv/bin/python -m bench idle_sockets --sockets 2000   # the sessions_log figure's size
    .venv/bin/python -m bench idle_sockets --write          # and record them in bench/README.md

Each part runs on a fresh daphne process (one worker, ``bench.sessions_settings``, PostgreSQL
and the Redis channel layer, RLIMIT_NOFILE raised to the hard limit in both processes;
``--server uvicorn`` runs the memory part on uvicorn instead, as bench/capacity.py starts it):

* memory: 10 warm-up sockets, then ``--sockets`` sockets, 25 at a time, each opened and
  subscribed to one of ``sockets / 20`` sessions (20 per session, as in sessions_log); the
  server's VmRSS growth over that, after 2 s of quiet, divided by the sockets. The plain
  Channels consumer (bench/plain_channels.py) is measured the same way as the peer.
* join storm: ``--storm-sockets`` sockets opened first (connected and authenticated, not
  subscribed), then every one subscribes at once to one of ``--storm-sessions`` sessions.
  Each socket asks for the presence list when it is caught up (what the browser client does)
  and reads every presence frame. Times from the first subscribe sent: until every socket
  is caught up, and until every socket has been shown all the devices of its session (the
  largest ``devices`` list it received holds every one). Then each socket's list is checked:
  every device of its session exactly once, nobody else's; and so is the last list it was
  shown (its last presence frame or answer, one second after every socket was shown all).
* access re-check (``--recheck-sockets N``): one periodic access re-check
  (``revocation._check_all``) of N sockets held as the memory part holds them (the bench
  user's token, 20 sockets per session), run twice in a Django shell on the same database:
  its queries and wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench.sessions_log import (
    BASE_DB,
    ROOT,
    SETUP,
    Server,
    _raise_nofile,
    base_env,
    code_version,
    daphne,
    manage_output,
    postgres_database,
    run_manage,
    ws_open,
    ws_subscribe,
)

BEGIN, END = "<!-- idle-sockets:begin -->", "<!-- idle-sockets:end -->"
RECHECK = """
import json, time
from django.contrib.auth import get_user_model
from django.db import connection
from sessions_app import revocation
from sessions_app.access import Actor
user = get_user_model().objects.get(username="bench")
work = [(revocation.Grant(Actor(user)), [f"idle-{{i // 20}}"]) for i in range({count})]
queries = [0]
def counted(execute, *args):
    queries[0] += 1
    return execute(*args)
out = []
with connection.execute_wrapper(counted):
    for _ in range(2):
        queries[0], started = 0, time.perf_counter()
        answers = revocation._check_all(work)
        out.append({{"queries": queries[0], "seconds": time.perf_counter() - started}})
assert all(allowed == set(names) for (_, allowed), (_, names) in zip(answers, work))
print(json.dumps(out))
"""
PER_SESSION = 20
OPEN_AT_ONCE = 25


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


async def idle_memory(server: Server, token: str, count: int, per_session: int) -> dict[str, Any]:
    """Server RSS growth per socket for ``count`` sockets, ``per_session`` in each session."""
    url = server.ws + (f"?token={token}" if token else "")
    warm = [await ws_open(url) for _ in range(10)]
    for i, conn in enumerate(warm):
        await ws_subscribe(conn, f"idle-{i}")
    await asyncio.sleep(1.0)
    before = server.rss_kb()
    conns: list[Any] = []
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    retries = [0]

    async def one(i: int) -> None:
        async with gate:
            for attempt in range(5):
                try:
                    conn = await ws_open(url)
                    break
                except Exception:  # daphne drops a handshake its app took 5 s to accept
                    if attempt == 4:
                        raise
                    retries[0] += 1
                    await asyncio.sleep(1.0)
            conns.append(conn)
            await ws_subscribe(conn, f"idle-{i // per_session}")

    started = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), 1800)
        opened = time.perf_counter() - started
        await asyncio.sleep(2.0)
        after = server.rss_kb()
        return {"sockets": count, "before_kb": before, "after_kb": after,
                "per_socket_kb": (after - before) / count, "open_seconds": opened,
                "retried_opens": retries[0]}  # fmt: skip
    finally:
        await asyncio.gather(*(c.close() for c in conns + warm), return_exceptions=True)


class StormSocket:
    """One socket of the storm: its device, its session, what presence showed it."""

    def __init__(self, conn: Any, device: str, session: str) -> None:
        self.conn, self.device, self.session = conn, device, session
        self.caught_up = asyncio.Event()
        self.largest: list[str] = []  # device ids of the largest list shown so far
        self.listed: list[str] | None = None  # device ids of the answer to its presence request
        self.last: list[str] = []  # device ids of the last presence frame (or answer) it got
        self.frames = 0
        self.times: list[tuple[float, int, str]] = []  # (when, devices listed, event)

    async def run(self, everyone: int, complete: asyncio.Event, done: list[int]) -> None:
        await self.conn.send(orjson.dumps({"op": "subscribe", "id": "s", "session": self.session,
                                           "after": "-1"}).decode())  # fmt: skip
        counted = False
        while True:
            frame = orjson.loads(await self.conn.recv())
            kind = frame["type"]
            if kind == "caught_up" and frame.get("id") == "s":
                self.caught_up.set()
                ask = {"op": "presence", "id": "p", "session": self.session}
                await self.conn.send(orjson.dumps(ask).decode())
            elif kind == "presence":
                self.frames += 1
                ids = [d["id"] for d in frame["devices"]]
                self.times.append((time.perf_counter(), len(ids), frame["event"]))
                self.last = ids
                if frame.get("id") == "p":
                    self.listed = ids
                if len(ids) > len(self.largest):
                    self.largest = ids
                if not counted and len(self.largest) >= everyone and self.listed is not None:
                    counted = True
                    done[0] += 1
                    if done[0] == done[1]:
                        complete.set()
            elif kind == "error":
                raise RuntimeError(frame)


async def join_storm(server: Server, token: str, count: int, sessions: int) -> dict[str, Any]:
    url = server.ws + f"?token={token}"
    gate = asyncio.Semaphore(OPEN_AT_ONCE * 2)
    sockets: list[StormSocket] = []

    async def open_one(i: int) -> None:
        import websockets

        async with gate:
            conn = await websockets.connect(
                url, max_size=2**26, compression=None, ping_interval=None, open_timeout=60
            )
            hello = orjson.loads(await conn.recv())
            sockets.append(StormSocket(conn, hello["device"], f"storm-{i % sessions}"))

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(open_one(i) for i in range(count))), 1800)
    opened = time.perf_counter() - started
    log(f"  {count} sockets open in {opened:.0f} s; the storm starts")
    await asyncio.sleep(2.0)
    rss_open = server.rss_kb()
    per_session = count // sessions
    complete = asyncio.Event()
    done = [0, len(sockets)]
    try:
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(s.run(per_session, complete, done)) for s in sockets]
        waiters = [asyncio.ensure_future(s.caught_up.wait()) for s in sockets]
        await asyncio.wait_for(asyncio.gather(*waiters), 600)
        all_caught_up = time.perf_counter() - started
        finished = asyncio.ensure_future(complete.wait())
        wait = float(os.environ.get("BENCH_STORM_WAIT", 600))
        await asyncio.wait([finished, *tasks], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done() and task.exception():
                raise task.exception()  # type: ignore[misc]
        all_shown = time.perf_counter() - started if complete.is_set() else None
        await asyncio.sleep(1.0)  # any late frame would show here
        rss_after = server.rss_kb()
        by_session: dict[str, set[str]] = {}
        for s in sockets:
            by_session.setdefault(s.session, set()).add(s.device)
        wrong = wrong_last = 0
        for s in sockets:  # the fullest list it was shown: every device of its session, once
            shown = s.largest
            if len(shown) != len(set(shown)) or set(shown) != by_session[s.session]:
                wrong += 1
                if wrong <= 3:  # what went wrong, for the first few
                    log(
                        f"  wrong list: {s.device} of {s.session} was shown {len(shown)} of "
                        f"{len(by_session[s.session])} devices in {s.frames} presence frames"
                    )
            # and so is the last list it was shown (a frame held back, then sent, included)
            last = s.last
            if len(last) != len(set(last)) or set(last) != by_session[s.session]:
                wrong_last += 1
        for task in tasks:
            task.cancel()
        if os.environ.get("BENCH_STORM_TIMELINE"):
            seconds: dict[int, int] = {}
            for s in sockets:
                for when, _, _ in s.times:
                    second = int(when - started)
                    seconds[second] = seconds.get(second, 0) + 1
            log(f"  presence frames by second: {sorted(seconds.items())}")
        return {"sockets": count, "sessions": sessions, "open_seconds": opened,
                "caught_up_seconds": all_caught_up, "shown_seconds": all_shown,
                "presence_frames": sum(s.frames for s in sockets), "wrong_lists": wrong,
                "wrong_last_lists": wrong_last,
                "rss_open_kb": rss_open, "rss_after_kb": rss_after}  # fmt: skip
    finally:
        await asyncio.gather(*(s.conn.close() for s in sockets), return_exceptions=True)


def server_of(kind: str) -> Any:
    """The context manager that starts ``kind`` (daphne, or uvicorn as bench/capacity.py runs it)."""
    if kind == "daphne":
        return daphne
    from bench.capacity import uvicorn

    return uvicorn


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    pid = os.getpid()
    results: dict[str, Any] = {"code": code_version(), "load_start": os.getloadavg(),
                               "server": args.server}  # fmt: skip
    serve = server_of(args.server)
    most = max(args.sockets, args.recheck_sockets)
    names = [f"idle-{i}" for i in range(most // PER_SESSION + 10)]
    names += [f"storm-{i}" for i in range(args.storm_sessions)]
    _raise_nofile()
    with postgres_database(BASE_DB, f"bench_idlesock_{pid}") as db:
        env = base_env(DATABASE_URL=db, DJANGO_SETTINGS_MODULE="bench.idle_settings")
        plain_env = base_env(DJANGO_SETTINGS_MODULE="bench.plain_settings")
        run_manage("migrate", "--no-input", env=env)
        token = manage_output("shell", "-c", SETUP.format(names=names), env=env)
        token = token.strip().splitlines()[-1]
        if args.recheck_sockets:
            log(f"access re-check: {args.recheck_sockets} sockets")
            out = manage_output("shell", "-c", RECHECK.format(count=args.recheck_sockets), env=env)
            results["recheck"] = {"sockets": args.recheck_sockets,
                                  "runs": json.loads(out.strip().splitlines()[-1])}  # fmt: skip
            log(f"  {results['recheck']}")
        if args.sockets:
            with serve("config.asgi:application", env) as ours:
                log(f"idle memory: {args.sockets} sockets (ours)")
                results["idle_ours"] = asyncio.run(
                    idle_memory(ours, token, args.sockets, PER_SESSION)
                )
                log(f"  {results['idle_ours']}")
            if args.plain:
                with serve("bench.plain_channels:application", plain_env) as plain:
                    log(f"idle memory: {args.sockets} sockets (plain Channels)")
                    results["idle_plain"] = asyncio.run(
                        idle_memory(plain, "", args.sockets, PER_SESSION)
                    )
                    log(f"  {results['idle_plain']}")
        if args.storm_sockets:
            with daphne("config.asgi:application", env) as ours:
                log(f"join storm: {args.storm_sockets} sockets, {args.storm_sessions} sessions")
                results["storm"] = asyncio.run(
                    join_storm(ours, token, args.storm_sockets, args.storm_sessions)
                )
                log(f"  {results['storm']}")
    results["load_end"] = os.getloadavg()
    return results


def table(res: dict[str, Any]) -> str:
    load = "/".join(f"{x:.1f}" for x in res["load_start"])
    load_end = "/".join(f"{x:.1f}" for x in res["load_end"])
    lines = [
        f"Code measured: {res['code']}; load average (1/5/15 min) {load} at the start, "
        f"{load_end} at the end (2 cores, shared); server: {res.get('server', 'daphne')}.",
        "",
        "| Figure | Measured | Goal | |",
        "|---|---|---|---|",
    ]
    idle, plain = res.get("idle_ours"), res.get("idle_plain")
    if idle:
        peer = f" (plain Channels: {plain['per_socket_kb']:.0f} KB)" if plain else ""
        kb = idle["per_socket_kb"]
        lines.append(
            f"| Memory per idle subscribed socket ({idle['sockets']:,} sockets, "
            f"{PER_SESSION} per session) | {kb:.1f} KB{peer}; opened and subscribed in "
            f"{idle['open_seconds']:.0f} s | <= 25 KB | {'met' if kb <= 25 else 'not met'} |"
        )
    recheck = res.get("recheck")
    if recheck:
        runs = ", ".join(
            f"{r['queries']:,} queries in {r['seconds']:.2f} s" for r in recheck["runs"]
        )
        lines.append(
            f"| One periodic access re-check of {recheck['sockets']:,} sockets | {runs} | "
            f"well under ACCESS_RECHECK_SECONDS | |"
        )
    storm = res.get("storm")
    if storm:
        shown = storm["shown_seconds"]
        shown_text = f"{shown:.1f} s" if shown is not None else "not within 600 s"
        ok = shown is not None and shown <= 20 and storm["wrong_lists"] == 0
        ok = ok and storm.get("wrong_last_lists") == 0
        lines.append(
            f"| Join storm: {storm['sockets']:,} open sockets subscribe at once to "
            f"{storm['sessions']} sessions | every socket caught up in "
            f"{storm['caught_up_seconds']:.1f} s, every device shown to every member in "
            f"{shown_text}; {storm['presence_frames']:,} presence frames; "
            f"{storm['wrong_lists']} wrong lists ({storm.get('wrong_last_lists')} wrong last "
            f"lists) | <= 20 s | {'met' if ok else 'not met'} |"
        )
    return "\n".join(lines)


def write_readme(body: str, command: str) -> None:
    readme = ROOT / "bench" / "README.md"
    text = readme.read_text()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = f"{BEGIN}\nRecorded {stamp} with `{command}`.\n\n{body}\n{END}"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text,
                      flags=re.S)  # fmt: skip
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10_000, help="idle sockets (0: skip)")
    parser.add_argument("--plain", action="store_true", help="measure plain Channels too")
    parser.add_argument(
        "--server", choices=("daphne", "uvicorn"), default="daphne", help="for the memory part"
    )
    parser.add_argument("--storm-sockets", type=int, default=10_000, help="0: skip the storm")
    parser.add_argument("--storm-sessions", type=int, default=100)
    parser.add_argument(
        "--recheck-sockets", type=int, default=0, help="time one access re-check of N sockets"
    )
    parser.add_argument("--write", action="store_true", help="record in bench/README.md")
    parser.add_argument("--json", type=Path, help="also save the raw results here")
    args = parser.parse_args()
    started = time.perf_counter()
    results = run_all(args)
    results["seconds"] = time.perf_counter() - started
    body = table(results)
    print(body)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.write:
        write_readme(body, "python -m bench idle_sockets " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
