"""Benchmark: the durable session log (sessions_app) against plain Channels and django-eventstream.

Run from the repository root (PostgreSQL and Redis must be running)::

    .venv/bin/python -m bench sessions_log            # print the figures (about 4 minutes)
    .venv/bin/python -m bench sessions_log --quick    # fewer events and repeats (about 1.5 min)
    .venv/bin/python -m bench sessions_log --write    # and record them in bench/README.md

Three servers run side by side, one daphne process each, all on loopback, all on PostgreSQL
(scratch databases, dropped afterwards) and Redis (a unique prefix):

* ours: the demo site (``config.asgi``) with ``bench.sessions_settings``;
* plain: ``bench.plain_channels``, a consumer that forwards each publish frame with one
  ``group_send`` (no persistence) over the same Redis channel layer;
* eventstream: ``bench.eventstream_site``, django-eventstream 5 with DjangoModelStorage and
  its Redis setting; a POST of a frame calls ``send_event`` once per event; subscribers read
  SSE.

The client (this process) runs the publishers and the 20 subscribers. Throughput is events
per second that reach all 20 subscribers: from the first publish until the last subscriber
has every event. Repeats are interleaved across the systems; figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import stop  # noqa: E402
from tests.e2e.servers import (  # noqa: E402
    free_port,
    manage_output,
    postgres_database,
    run_manage,
    wait_until_serving,
)

BASE_DB = os.environ.get(
    "BENCH_DATABASE_URL", f"postgres://{getpass.getuser()}@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BEGIN, END = "<!-- sessions-log:begin -->", "<!-- sessions-log:end -->"
FIG_BEGIN, FIG_END = "<!-- sessions-log:figures:begin -->", "<!-- sessions-log:figures:end -->"

SUBSCRIBERS = 20
PUBLISHERS = 8
WINDOW = 4  # publish frames a publisher may have unacknowledged
COALESCED = 20  # events per publish frame in the coalesced workload
DELTA_CHARS = 32  # text delta of every event: a marker then padding
HISTORY = 10_000  # entries for the resume and snapshot figures
IDLE_SOCKETS = 2000
IDLE_PER_SESSION = 20
RUN_TIMEOUT = 60.0  # no single measurement may take longer


@dataclass
class Profile:
    repeats: int
    single_frames: int  # frames per publisher, one event each (ours, plain)
    coalesced_frames: int  # frames per publisher, COALESCED events each (ours, plain)
    es_single_frames: int  # the same for django-eventstream (a few hundred events/s)
    es_coalesced_frames: int
    latency_seconds: float
    resume_repeats: int
    idle_sockets: int


FULL = Profile(3, 150, 40, 15, 2, 3.0, 5, IDLE_SOCKETS)
QUICK = Profile(2, 150, 40, 20, 2, 2.0, 3, 500)


# --- events and frames ---------------------------------------------------------------------


def event(publisher: int, frame: int, index: int) -> dict[str, Any]:
    mark = f"{publisher:02d}{frame:06d}{index:03d}"  # publisher+frame (8) identifies the frame
    delta = (mark + "-" * DELTA_CHARS)[:DELTA_CHARS]
    return {"type": "TEXT_MESSAGE_CONTENT", "message": "m1", "run": "r1", "data": {"delta": delta}}


def frame_events(publisher: int, frame: int, count: int) -> list[dict[str, Any]]:
    return [event(publisher, frame, i) for i in range(count)]


def publish_frame(session: str, publisher: int, frame: int, count: int) -> str:
    return json.dumps(
        {
            "op": "publish",
            "id": frame,
            "session": session,
            "events": frame_events(publisher, frame, count),
        },
        separators=(",", ":"),
    )


# --- servers -------------------------------------------------------------------------------


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Server:
    base: str
    pid: int

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws/sessions/"

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


@contextmanager
def spawned(
    argv: list[str],
    port: int,
    label: str,
    *,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    complain: str | None = "Traceback",
) -> Iterator[Server]:
    """A server process (``argv``, listening on ``port``) until the block ends, its output in a
    temporary log that is printed if it contains ``complain``; RLIMIT_NOFILE raised."""
    with tempfile.NamedTemporaryFile(prefix=f"bench-{label}-{port}-", suffix=".log") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_raise_nofile)  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base + "/", proc, Path(out.name), timeout=60)
            yield Server(base, proc.pid)
        finally:
            stop(proc)
            text = Path(out.name).read_text(errors="replace")
            if complain and complain in text:
                print(f"[{label}] server log had errors:\n{text[-3000:]}", file=sys.stderr)


@contextmanager
def daphne(target: str, env: dict[str, str]) -> Iterator[Server]:
    """``daphne target`` on a free loopback port, RLIMIT_NOFILE raised to its hard limit."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix=f"bench-daphne-{port}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), target],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_raise_nofile,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base + "/", proc, Path(log.name), timeout=60)
        yield Server(base, proc.pid)
    finally:
        text = Path(log.name).read_text(errors="replace")  # before shutdown's own noise
        stop(proc)
        log.close()
        # An SSE client that hangs up makes Django log RequestAborted: not an error here.
        if text.count("Traceback") > text.count("RequestAborted"):
            print(f"[{target}] server log had errors:\n{text[-3000:]}", file=sys.stderr)
        os.unlink(log.name)


def base_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-not-secret",
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": REDIS_URL,
        "CHANNEL_LAYER_PREFIX": f"bench{os.getpid()}",
        **extra,
    }


SETUP = """
from django.contrib.auth import get_user_model
from sessions_app.access import mint_token
from sessions_app.models import Session
user, _ = get_user_model().objects.get_or_create(username="bench")
Session.objects.bulk_create([Session(name=n, owner=user) for n in {names!r}], ignore_conflicts=True)
print(mint_token(user))
"""


# --- WebSocket client (ours and plain speak the same frames) ---------------------------------


async def ws_open(url: str) -> Any:
    import websockets

    conn = await websockets.connect(
        url, max_size=2**26, compression=None, ping_interval=None, open_timeout=30
    )
    hello = json.loads(await conn.recv())
    if hello.get("type") != "hello":
        raise RuntimeError(f"expected hello, got {hello}")
    return conn


async def ws_subscribe(conn: Any, session: str, after: str = "-1") -> tuple[dict[str, Any], int]:
    """Subscribe; return the frame that ends the subscribe and how many events came before it."""
    await conn.send(
        json.dumps({"op": "subscribe", "id": "sub", "session": session, "after": after})
    )
    count = 0
    while True:
        frame = json.loads(await conn.recv())
        if frame["type"] == "events":
            count += len(frame["events"])
        elif frame.get("id") == "sub" and frame["type"] in ("caught_up", "snapshot", "error"):
            if frame["type"] == "error":
                raise RuntimeError(frame)
            return frame, count


async def ws_follow(
    conn: Any, total: int, latencies: list[float] | None, sent: dict[str, float]
) -> float:
    """Receive until ``total`` events arrived; return the time the last one did."""
    got = 0
    while got < total:
        raw = await conn.recv()
        now = time.perf_counter()
        frame = json.loads(raw)
        if frame["type"] != "events":
            if frame["type"] == "error":
                raise RuntimeError(frame)
            continue
        events = frame["events"]
        got += len(events)
        if latencies is not None:
            for e in events:
                latencies.append(now - sent[e["data"]["delta"][:8]])
    return time.perf_counter()


async def ws_publish(
    conn: Any,
    frames: list[tuple[str, str]],
    sent: dict[str, float],
    start: float,
    interval: float | None,
    ack_latencies: list[float],
) -> None:
    """Send ``(key, frame)`` pairs: at most WINDOW unacknowledged, or every ``interval`` s.

    The frame ids are the pairs' indexes; each ack's delay after its frame was sent (the
    commit, for ours) goes to ``ack_latencies``.
    """
    window = asyncio.Semaphore(WINDOW if interval is None else 10**6)
    acked = 0

    async def read_acks() -> None:
        nonlocal acked
        while acked < len(frames):
            reply = json.loads(await conn.recv())
            if reply["type"] == "ack":
                ack_latencies.append(time.perf_counter() - sent[frames[reply["id"]][0]])
                acked += 1
                window.release()
            elif reply["type"] == "error":
                raise RuntimeError(f"publish refused: {reply}")

    reader = asyncio.create_task(read_acks())
    for i, (key, text) in enumerate(frames):
        if interval is not None:
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await window.acquire()
        sent[key] = time.perf_counter()
        await conn.send(text)
    await reader


@dataclass
class Run:
    events: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    ack_latencies: list[float] = field(default_factory=list)
    missing: int = 0  # events some subscriber never received (django-eventstream)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def ws_run(
    server: Server,
    token: str,
    session: str,
    frames_per_publisher: int,
    per_frame: int,
    rate: float | None = None,
) -> Run:
    """Publishers and SUBSCRIBERS subscribers on one session; rate: events/s in all, paced."""
    url = server.ws + (f"?token={token}" if token else "")
    subs = [await ws_open(url) for _ in range(SUBSCRIBERS)]
    pubs = [await ws_open(url) for _ in range(PUBLISHERS)]
    try:
        for conn in subs:
            await ws_subscribe(conn, session)
        await asyncio.sleep(0.3)  # presence chatter of the joins settles
        total = PUBLISHERS * frames_per_publisher * per_frame
        sent: dict[str, float] = {}
        latencies: list[float] | None = [] if rate is not None else None
        plans = [
            [
                (f"{p:02d}{f:06d}", publish_frame(session, p, f, per_frame))
                for f in range(frames_per_publisher)
            ]
            for p in range(PUBLISHERS)
        ]
        interval = None if rate is None else PUBLISHERS * per_frame / rate
        acks: list[float] = []
        start = time.perf_counter()
        followers = [asyncio.create_task(ws_follow(c, total, latencies, sent)) for c in subs]
        publishers = [
            asyncio.create_task(
                ws_publish(
                    conn,
                    plan,
                    sent,
                    start + (0 if interval is None else p * interval / PUBLISHERS),
                    interval,
                    acks,
                )
            )
            for p, (conn, plan) in enumerate(zip(pubs, plans, strict=True))
        ]
        done = await asyncio.wait_for(asyncio.gather(*followers, *publishers), RUN_TIMEOUT)
        end = max(t for t in done if t is not None)
        return Run(total, end - start, latencies or [], acks)
    finally:
        await asyncio.gather(*(c.close() for c in subs + pubs), return_exceptions=True)


# --- django-eventstream client (HTTP POST to publish, SSE to subscribe) ---------------------


@dataclass
class SseProgress:
    """What one SSE subscriber has received: distinct event ids, and when the last one came."""

    ids: set[int] = field(default_factory=set)
    count: int = 0  # events received, duplicates included
    last_time: float = 0.0


async def sse_follow(
    client: Any,
    url: str,
    wanted: int,
    ready: asyncio.Event | None,
    last_event_id: str | None = None,
    progress: SseProgress | None = None,
) -> tuple[float, int]:
    """Read the SSE stream until ``wanted`` distinct events came; return (time, events read).

    django-eventstream may send ids out of order (two publishers' Redis messages overtake each
    other), so completion is counted in distinct ids, not by the highest id.
    """
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    got = progress if progress is not None else SseProgress()
    async with client.stream("GET", url, headers=headers) as response:
        response.raise_for_status()
        buffer = ""
        async for chunk in response.aiter_text():
            buffer += chunk
            blocks = buffer.split("\n\n")
            buffer = blocks.pop()
            for block in blocks:
                if block.startswith("event: message"):
                    got.count += 1
                    got.last_time = time.perf_counter()
                    for line in block.split("\n"):
                        if line.startswith("id: "):
                            got.ids.add(int(line.rsplit(":", 1)[1]))
                elif block.startswith("event: stream-open") and ready is not None:
                    ready.set()
            if len(got.ids) >= wanted:
                return time.perf_counter(), got.count
    raise RuntimeError(f"SSE stream ended after {len(got.ids)} of {wanted} events")


async def es_publish(client: Any, url: str, bodies: list[str]) -> None:
    queue = iter(bodies)

    async def worker() -> None:
        for body in queue:
            response = await client.post(
                url, content=body, headers={"content-type": "application/json"}
            )
            response.raise_for_status()

    await asyncio.gather(*(worker() for _ in range(WINDOW)))


async def es_run(server: Server, channel: str, frames_per_publisher: int, per_frame: int) -> Run:
    import httpx

    limits = httpx.Limits(max_connections=SUBSCRIBERS + PUBLISHERS * WINDOW + 4)
    async with httpx.AsyncClient(limits=limits, timeout=RUN_TIMEOUT) as client:
        total = PUBLISHERS * frames_per_publisher * per_frame
        readies = [asyncio.Event() for _ in range(SUBSCRIBERS)]
        progress = [SseProgress() for _ in range(SUBSCRIBERS)]
        url = f"{server.base}/events/{channel}/"
        followers = [
            asyncio.create_task(sse_follow(client, url, total, ready, progress=got))
            for ready, got in zip(readies, progress, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
        await asyncio.sleep(0.5)  # its Redis listener subscribes in the background
        bodies = [
            [
                json.dumps({"events": frame_events(p, f, per_frame)})
                for f in range(frames_per_publisher)
            ]
            for p in range(PUBLISHERS)
        ]
        start = time.perf_counter()
        url = f"{server.base}/publish/{channel}/"
        publishers = [asyncio.create_task(es_publish(client, url, b)) for b in bodies]
        await asyncio.wait_for(asyncio.gather(*publishers), RUN_TIMEOUT * 3)
        # Every event is committed now; a subscriber still short of some 5 s later lost them.
        await asyncio.wait(followers, timeout=5.0)
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        missing = sum(total - len(got.ids) for got in progress)
        return Run(total, max(got.last_time for got in progress) - start, missing=missing)


def es_fill(db_url: str, channel: str, count: int) -> None:
    """Store ``count`` events in django-eventstream's tables as send_event would (ids 1..n)."""
    import psycopg

    with psycopg.connect(db_url.replace("postgres://", "postgresql://")) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY django_eventstream_event (channel, type, data, eid, created) FROM STDIN"
            ) as copy,
        ):
            copy.write_row((channel, "", "", 0, "now"))  # its placeholder at id 0
            for i in range(1, count + 1):
                copy.write_row((channel, "message", json.dumps(event(99, i, 0)), i, "now"))
        conn.execute(
            "INSERT INTO django_eventstream_eventcounter (name, value, updated) "
            "VALUES (%s, %s, now())",
            [channel, count],
        )


async def es_resume(server: Server, channel: str, count: int) -> float:
    import httpx

    async with httpx.AsyncClient(timeout=RUN_TIMEOUT) as client:
        start = time.perf_counter()
        end, got = await sse_follow(
            client, f"{server.base}/events/{channel}/", count, None, last_event_id=f"{channel}:0"
        )
        if got != count:
            raise RuntimeError(f"eventstream resume gave {got} of {count}")
        return end - start


# --- ours: history, resume, snapshot ---------------------------------------------------------


async def fill(server: Server, token: str, session: str, events: list[dict[str, Any]]) -> None:
    conn = await ws_open(f"{server.ws}?token={token}")
    try:
        for i in range(0, len(events), 500):
            frame = {"op": "publish", "id": i, "session": session, "events": events[i : i + 500]}
            await conn.send(json.dumps(frame))
            while True:
                reply = json.loads(await conn.recv())
                if reply.get("id") == i:
                    if reply["type"] != "ack":
                        raise RuntimeError(reply)
                    break
    finally:
        await conn.close()


async def resume(server: Server, token: str, session: str) -> tuple[float, float]:
    """(seconds from connect to caught_up, seconds from subscribe to caught_up)."""
    start = time.perf_counter()
    conn = await ws_open(f"{server.ws}?token={token}")
    try:
        opened = time.perf_counter()
        frame, count = await ws_subscribe(conn, session, "-1")
        end = time.perf_counter()
        if count != HISTORY:
            raise RuntimeError(f"resume replayed {count} of {HISTORY}")
        return end - start, end - opened
    finally:
        await conn.close()


async def snapshot(server: Server, token: str, session: str, repeats: int) -> list[float]:
    conn = await ws_open(f"{server.ws}?token={token}")
    times = []
    try:
        for i in range(repeats):
            start = time.perf_counter()
            frame, _ = await ws_subscribe(conn, session, "snapshot")
            times.append(time.perf_counter() - start)
            text = frame["state"]["messages"][0]["text"]
            if frame["type"] != "snapshot" or len(text) != HISTORY * DELTA_CHARS:
                raise RuntimeError("unexpected snapshot")
            await conn.send(json.dumps({"op": "unsubscribe", "id": f"u{i}", "session": session}))
            while json.loads(await conn.recv()).get("id") != f"u{i}":
                pass
    finally:
        await conn.close()
    return times


# --- idle sockets -------------------------------------------------------------------------


async def idle_memory(
    server: Server, token: str, sessions: list[str], count: int
) -> dict[str, Any]:
    """Server RSS delta per socket for ``count`` sockets, each subscribed to one session."""
    url = server.ws + (f"?token={token}" if token else "")
    warm = [await ws_open(url) for _ in range(10)]
    for i, conn in enumerate(warm):
        await ws_subscribe(conn, sessions[i % len(sessions)])
    await asyncio.sleep(1.0)
    before = server.rss_kb()
    conns: list[Any] = []
    gate = asyncio.Semaphore(25)

    async def one(i: int) -> None:
        async with gate:
            conn = await ws_open(url)
            conns.append(conn)
            await ws_subscribe(conn, sessions[i // IDLE_PER_SESSION % len(sessions)])

    started = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), 240)
        opened = time.perf_counter() - started
        await asyncio.sleep(2.0)
        after = server.rss_kb()
        return {"sockets": count, "before_kb": before, "after_kb": after,
                "per_socket_kb": (after - before) / count, "open_seconds": opened}  # fmt: skip
    finally:
        await asyncio.gather(*(c.close() for c in conns + warm), return_exceptions=True)


# --- the whole run ----------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_all(profile: Profile) -> dict[str, Any]:
    results: dict[str, Any] = {"profile": profile.__dict__, "code": code_version(),
                               "load_start": os.getloadavg()[0]}  # fmt: skip
    pid = os.getpid()
    names = [f"tp-{i}" for i in range(4 * profile.repeats + 8)]
    names += ["resume", "snap"] + [
        f"idle-{i}" for i in range(profile.idle_sockets // IDLE_PER_SESSION + 1)
    ]
    with (
        postgres_database(BASE_DB, f"bench_ours_{pid}") as ours_db,
        postgres_database(BASE_DB, f"bench_es_{pid}") as es_db,
    ):
        ours_env = base_env(DATABASE_URL=ours_db, DJANGO_SETTINGS_MODULE="bench.sessions_settings")
        es_env = base_env(
            DATABASE_URL=es_db, DJANGO_SETTINGS_MODULE="bench.eventstream_site.settings"
        )
        plain_env = base_env(DJANGO_SETTINGS_MODULE="bench.plain_settings")
        log("migrating the scratch databases")
        run_manage("migrate", "--no-input", env=ours_env)
        run_manage("migrate", "--no-input", env=es_env)
        token = manage_output("shell", "-c", SETUP.format(names=names), env=ours_env)
        token = token.strip().splitlines()[-1]
        es_fill(es_db, "resume", HISTORY)
        session_names = iter(names)
        with (
            daphne("config.asgi:application", ours_env) as ours,
            daphne("bench.plain_channels:application", plain_env) as plain,
            daphne("bench.eventstream_site.asgi:application", es_env) as es,
        ):
            results.update(asyncio.run(measure(profile, ours, plain, es, token, session_names)))
    # Idle sockets: fresh servers, so that nothing earlier shapes their memory.
    with postgres_database(BASE_DB, f"bench_idle_{pid}") as idle_db:
        idle_env = base_env(DATABASE_URL=idle_db, DJANGO_SETTINGS_MODULE="bench.sessions_settings")
        run_manage("migrate", "--no-input", env=idle_env)
        token = manage_output("shell", "-c", SETUP.format(names=names), env=idle_env)
        token = token.strip().splitlines()[-1]
        idle = [n for n in names if n.startswith("idle-")]
        _raise_nofile()
        with daphne("config.asgi:application", idle_env) as ours:
            log(f"idle memory: {profile.idle_sockets} sockets (ours)")
            results["idle_ours"] = asyncio.run(idle_memory(ours, token, idle, profile.idle_sockets))
        with daphne("bench.plain_channels:application", plain_env) as plain:
            log(f"idle memory: {profile.idle_sockets} sockets (plain Channels)")
            # Half as many: its figure is a reference, and it keeps the run short.
            count = profile.idle_sockets // 2
            results["idle_plain"] = asyncio.run(idle_memory(plain, "", idle, count))
    return results


async def measure(
    profile: Profile, ours: Server, plain: Server, es: Server, token: str, names: Iterator[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {key: [] for key in (
        "ours_single", "ours_coalesced", "plain_single", "plain_coalesced",
        "es_single", "es_coalesced",
    )}  # fmt: skip
    p = profile
    # warm-up: first connections, imports, thread pools, database connections
    await ws_run(ours, token, next(names), 5, 5)
    await ws_run(plain, "", "warm", 5, 5)
    await es_run(es, "warm", 2, 2)

    async def once(key: str, r: int) -> Run:
        system, workload = key.split("_")
        per_frame = 1 if workload == "single" else COALESCED
        if system == "es":
            frames = p.es_single_frames if per_frame == 1 else p.es_coalesced_frames
            return await es_run(es, f"{key}-{r}", frames, per_frame)
        frames = p.single_frames if per_frame == 1 else p.coalesced_frames
        if system == "plain":
            return await ws_run(plain, "", f"{key}-{r}", frames, per_frame)
        return await ws_run(ours, token, next(names), frames, per_frame)

    for r in range(p.repeats):  # interleaved, so that the machine's load hits all alike
        for key in ("ours_single", "plain_single", "es_single",
                    "ours_coalesced", "plain_coalesced", "es_coalesced"):  # fmt: skip
            run = await once(key, r)
            out[key].append(run.rate)
            out["lost"] = out.get("lost", 0) + run.missing
            lost = f" ({run.missing} deliveries lost)" if run.missing else ""
            log(
                f"{key} #{r + 1}: {run.events} events in {run.seconds:.2f}s = {run.rate:,.0f}/s{lost}"
            )
    # latency at half the maximum rate (ours), each workload
    for key, per_frame in (("ours_single", 1), ("ours_coalesced", COALESCED)):
        rate = median(out[key]) / 2
        frames = max(1, int(rate * p.latency_seconds / PUBLISHERS / per_frame))
        lat: list[float] = []
        p99s: list[float] = []
        acks: list[float] = []
        for _ in range(3):
            run = await ws_run(ours, token, next(names), frames, per_frame, rate=rate)
            lat += run.latencies
            acks += run.ack_latencies
            p99s.append(pct(run.latencies, 0.99))
            log(f"latency {key} at {rate:,.0f}/s (achieved {run.rate:,.0f}/s): "
                f"p50 {pct(run.latencies, .5) * 1e3:.1f} ms, "
                f"p99 {pct(run.latencies, .99) * 1e3:.1f} ms")  # fmt: skip
        out[f"latency_{key}"] = {"rate": rate, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
                                 "p99_runs": p99s,
                                 "ack_p50": pct(acks, 0.5), "ack_p99": pct(acks, 0.99),
                                 "samples": len(lat)}  # fmt: skip
    # resume after HISTORY missed entries: ours, then django-eventstream
    await fill(ours, token, "resume", [event(98, i, 0) for i in range(HISTORY)])
    ours_resume = [await resume(ours, token, "resume") for _ in range(p.resume_repeats)]
    out["resume_ours"] = median([t for t, _ in ours_resume])
    out["resume_ours_subscribe"] = median([t for _, t in ours_resume])
    out["resume_es"] = median(
        [await es_resume(es, "resume", HISTORY) for _ in range(p.resume_repeats)]
    )
    log(f"resume {HISTORY}: ours {out['resume_ours'] * 1e3:.0f} ms "
        f"(subscribe only {out['resume_ours_subscribe'] * 1e3:.0f} ms), "
        f"eventstream {out['resume_es'] * 1e3:.0f} ms")  # fmt: skip
    # snapshot of HISTORY text deltas
    history = [{"type": "RUN_STARTED", "run": "r1"},
               {"type": "TEXT_MESSAGE_START", "message": "m1", "run": "r1",
                "data": {"role": "assistant"}}]  # fmt: skip
    history += [event(97, i, 0) for i in range(HISTORY)]
    await fill(ours, token, "snap", history)
    # The first snapshot folds every entry and leaves a checkpoint; later ones start there.
    times = await snapshot(ours, token, "snap", p.resume_repeats + 1)
    out["snapshot_first"], out["snapshot"] = times[0], median(times[1:])
    log(f"snapshot of {HISTORY} deltas: {out['snapshot'] * 1e3:.0f} ms "
        f"(first, without a checkpoint: {out['snapshot_first'] * 1e3:.0f} ms)")  # fmt: skip
    return out


# --- report ----------------------------------------------------------------------------------


def runs_ms(lat: dict[str, Any]) -> str:
    runs = " / ".join(f"{x * 1e3:.0f}" for x in lat["p99_runs"])
    return (
        f"{runs} ms; publish-to-ack p50 {lat['ack_p50'] * 1e3:.1f} ms, "
        f"p99 {lat['ack_p99'] * 1e3:.1f} ms"
    )


def code_version() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    changed = git("status", "--porcelain", "sessions_app", "config").splitlines()
    dirty = [line[3:] for line in changed]
    head = git("rev-parse", "--short", "HEAD").strip()
    return f"commit {head}" + (f" plus uncommitted changes in {', '.join(dirty)}" if dirty else "")


def table(res: dict[str, Any]) -> str:
    m = {k: median(v) for k, v in res.items() if isinstance(v, list) and v}
    lat = res["latency_ours_coalesced"]
    lat1 = res["latency_ours_single"]
    idle, idle_plain = res["idle_ours"], res["idle_plain"]

    def row(what: str, value: str, goal: str, ratio: float, met: bool) -> str:
        return f"| {what} | {value} | {goal} | {ratio:.2f}x | {'met' if met else '**missed**'} |"

    rows = [
        "| Figure | Measured (median) | Goal | Ratio to goal | |",
        "|---|---|---|---|---|",
        row("Throughput, coalesced frames (20 events/publish), ours vs plain Channels",
            f"{m['ours_coalesced']:,.0f} vs {m['plain_coalesced']:,.0f} events/s",
            ">= 2x plain", m["ours_coalesced"] / m["plain_coalesced"] / 2,
            m["ours_coalesced"] >= 2 * m["plain_coalesced"]),
        row("Throughput, 1 event/publish, ours vs plain Channels",
            f"{m['ours_single']:,.0f} vs {m['plain_single']:,.0f} events/s",
            ">= 2x plain", m["ours_single"] / m["plain_single"] / 2,
            m["ours_single"] >= 2 * m["plain_single"]),
        row("Throughput, coalesced, ours vs django-eventstream",
            f"{m['ours_coalesced']:,.0f} vs {m['es_coalesced']:,.0f} events/s",
            ">= 10x eventstream", m["ours_coalesced"] / m["es_coalesced"] / 10,
            m["ours_coalesced"] >= 10 * m["es_coalesced"]),
        row("Throughput, 1 event/publish, ours vs django-eventstream",
            f"{m['ours_single']:,.0f} vs {m['es_single']:,.0f} events/s",
            ">= 10x eventstream", m["ours_single"] / m["es_single"] / 10,
            m["ours_single"] >= 10 * m["es_single"]),
        row(f"Latency p99 (p50), coalesced at {lat['rate']:,.0f} events/s",
            f"{lat['p99'] * 1e3:.1f} ms ({lat['p50'] * 1e3:.1f} ms); p99 per run {runs_ms(lat)}",
            "p99 <= 50 ms",
            0.050 / lat["p99"], lat["p99"] <= 0.050),
        row(f"Latency p99 (p50), 1 event/publish at {lat1['rate']:,.0f} events/s",
            f"{lat1['p99'] * 1e3:.1f} ms ({lat1['p50'] * 1e3:.1f} ms); p99 per run {runs_ms(lat1)}",
            "p99 <= 50 ms",
            0.050 / lat1["p99"], lat1["p99"] <= 0.050),
        row(f"Resume after {HISTORY:,} missed entries (connect to caught_up)",
            f"{res['resume_ours'] * 1e3:.0f} ms "
            f"(subscribe only {res['resume_ours_subscribe'] * 1e3:.0f} ms);"
            f" django-eventstream {res['resume_es'] * 1e3:.0f} ms", "<= 100 ms",
            0.100 / res["resume_ours"], res["resume_ours"] <= 0.100),
        row(f"Snapshot of {HISTORY:,} text deltas (subscribe to snapshot frame)",
            f"{res['snapshot'] * 1e3:.0f} ms (the first, which folds every entry and "
            f"leaves the checkpoint: {res.get('snapshot_first', float('nan')) * 1e3:.0f} ms)",
            "<= 50 ms",
            0.050 / res["snapshot"], res["snapshot"] <= 0.050),
        row(f"Memory per idle subscribed socket ({idle['sockets']:,} sockets)",
            f"{idle['per_socket_kb']:.0f} KB "
            f"(plain Channels consumer: {idle_plain['per_socket_kb']:.0f} KB)",
            "<= 50 KB", 50 / max(idle["per_socket_kb"], 1e-9), idle["per_socket_kb"] <= 50),
    ]  # fmt: skip
    lost = (
        f"django-eventstream lost {res['lost']} deliveries in this run (events that some "
        "subscriber never received; ids are counted distinct, since it can send them out of "
        "order); its throughput counts until the last event that did arrive."
        if res.get("lost")
        else "Every subscriber of every system received every event."
    )
    ratio_note = (
        "Ratio to goal: above 1.00x means the goal is met with that margin "
        "(for latency, time and memory: goal / measured)."
    )
    raw = {k: ([round(x) for x in v] if isinstance(v, list) else v) for k, v in res.items()
           if k.startswith(("ours_", "plain_", "es_"))}  # fmt: skip
    return "\n".join([
        f"Code measured: {res['code']}; {res['seconds']:.0f} s for the whole run; 1-minute "
        f"load average {res['load_start']:.1f} at the start, {res['load_end']:.1f} at the end "
        "(2 cores).", "",
        *rows, "", ratio_note, "", lost, "", "Every repeat (events/s): `" + json.dumps(raw) + "`",
    ])  # fmt: skip


def write_readme(body: str, command: str) -> None:
    path = ROOT / "bench" / "README.md"
    text = path.read_text() if path.exists() else INTRO
    figures = (
        f"{FIG_BEGIN}\nRecorded {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
        f"`{command}`.\n\n{body}\n{FIG_END}"
    )
    if FIG_BEGIN in text:
        text = re.sub(re.escape(FIG_BEGIN) + ".*?" + re.escape(FIG_END), lambda _: figures,
                      text, flags=re.S)  # fmt: skip
    elif BEGIN in text:
        text = text.replace(END, figures + "\n" + END)
    else:
        text = text.rstrip() + f"\n\n{BEGIN}\n## Durable session log\n\n{figures}\n{END}\n"
    path.write_text(text)


INTRO = """# Benchmarks

Scripts under `bench/` that anyone can rerun: `python -m bench` runs them all, `python -m bench
NAME` one of them (`make bench` does the former). Each benchmark owns one section below, with
the command that reproduces its figures.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and repeats")
    parser.add_argument(
        "--write", action="store_true", help="record the figures in bench/README.md"
    )
    parser.add_argument("--json", type=Path, help="also save the raw results here")
    args = parser.parse_args()
    profile = QUICK if args.quick else FULL
    started = time.perf_counter()
    results = run_all(profile)
    results["seconds"] = time.perf_counter() - started
    results["load_end"] = os.getloadavg()[0]
    body = table(results)
    print(body)
    print(f"(took {results['seconds']:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.write:
        command = ".venv/bin/python -m bench sessions_log" + (" --quick" if args.quick else "")
        write_readme(body, command + " --write")


if __name__ == "__main__":
    main()
