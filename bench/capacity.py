"""Benchmark: how many streaming chats one server core carries, ours beside three peers.

Run from the repository root (PostgreSQL and Redis must be running)::

    .venv/bin/python -m bench capacity                        # sizes 10,25,50,100,200,400; 20 s
    .venv/bin/python -m bench capacity --sizes 5,10 --seconds 8
    .venv/bin/python -m bench capacity --quick                # sizes 5,10,25; 8 s a step
    .venv/bin/python -m bench capacity --server uvicorn       # the other ASGI server
    .venv/bin/python -m bench capacity --keep-going           # every size, past the limits
    .venv/bin/python -m bench capacity --clients 2            # two load-generator processes
    .venv/bin/python -m bench capacity --systems ours,resumable  # some of the four systems
    .venv/bin/python -m bench capacity --workers 3            # three processes per system

The load (issue #25). N sessions; in each, one agent streams answers of ANSWER_TOKENS tokens
at TOKENS_PER_SECOND, pauses PAUSE_SECONDS, and answers again, until the step's time is up.
One device follows each session, and a second device every SECOND_DEVICE_EVERY-th session.

* ours: the demo site (``config.asgi``, ``bench.sessions_settings``) on PostgreSQL + Redis.
  Each agent is a ``sessions_app.client.SessionsClient`` (its own socket) running
  ``session.run()`` and calling ``run.text(token)`` per token: the SDK's default coalescing
  (a batch every ~30 ms, each an acknowledged append with an idempotent producer, the next
  batch waiting for the previous ack). Every answer is a whole run: RUN_STARTED,
  TEXT_MESSAGE_START, the text, TEXT_MESSAGE_END and RUN_FINISHED.
* plain: ``bench.plain_channels`` (one ``group_send`` per publish frame, nothing stored) on
  the same Redis channel layer. Its agent (``PlainRun``) does what the SDK does on the wire:
  the same events in the same frames (producer field included), the same ~30 ms coalescing,
  one publish in flight at a time. Like the SDK's agent, it subscribes to its own session
  (that is how an agent would hear a cancel), so each frame goes to the same sockets.
* resumable: Vercel's ``resumable-stream`` 2.2.13 (npm, its default ``redis`` 4 clients) on
  the same Redis, in a small ``node:http`` server (bench/resumable/server.mjs; the bench runs
  ``npm ci`` there, into its gitignored node_modules, the first time). It follows the AI SDK's
  "resume streams" documentation without Next.js: an answer is a POST whose body is the
  model's output (here the agent, ``capacity_peers.ResumableRun``: the AI SDK's UI message
  stream chunks, start / text-start / text-delta... / text-end / finish, one JSON line per
  coalesced batch with the same ~30 ms coalescing, written as the batches come); the server
  turns each line into the SSE text the AI SDK writes (``data: <json>``, then ``[DONE]``),
  hands that stream to ``createNewResumableStream`` under a fresh id and saves the id as the
  chat's active stream (the docs' ``activeStreamId``; a Redis key here, cleared when the answer
  ends). The POST's own copy of the stream (which the AI SDK would send back to the device that
  asked) is read and dropped in the server. A device is the docs' resume route, ``GET
  /chat/<id>/stream`` -> ``resumeExistingStream(activeStreamId)``: 204 when no answer is
  streaming (the device asks again after ``RESUME_POLL_SECONDS``, 50 ms: the AI SDK has no
  push for "a new answer started", so the first tokens of an answer can wait that long), and
  a new GET when an answer's stream ends. Every device of a chat is a resumer (the library's
  pub/sub path), which is how a second device or a reload follows an answer. Its server keeps
  each answer's text in memory while it streams and writes nothing durable but the id keys:
  an answer that ended is gone from it (the AI SDK's docs store finished messages in the app's
  database, which this server does not do).
* eventstream: django-eventstream 5.3.4 as ``bench.eventstream_site`` sets it up (the
  ``sessions_log`` bench's peer: ``DjangoModelStorage`` on PostgreSQL, every event a row, and
  Redis between processes), served by the same ASGI server as ours. The agent
  (``capacity_peers.EventstreamAgent``) sends the SDK's events in the SDK's frames with the same
  coalescing (``PlainRun``), each frame one HTTP POST to a view calling ``send_event`` per event,
  one POST in flight at a time; a device is an SSE GET of the session's channel from now, read
  back into tokens the same way.

Devices of ours and plain are raw WebSockets (as a browser's), subscribed from "now"; those
of the two SSE peers are HTTP clients (httpx). All parse each text
delta back into tokens. A token's text is its number in the session (``"17 "``: a realistic
few characters), so a device checks that it got every token once and in order, and looks up
when the agent called ``text()`` for it: the token latency includes the coalescing wait.

Measured per step, after every socket is connected and subscribed (connecting is not timed):

* token latency p50 / p99 / p99.9 over every delivery (a token to two devices counts twice);
* nothing lost: after the agents stop, each device has DRAIN_SECONDS to receive every token
  of its session; a missing, repeated or out-of-order token counts as lost;
* the server's CPU (user + sys of its process, from /proc; with ``--workers`` summed over
  them, the TCP proxy's shown apart) per 1,000 token deliveries, and its share of one core
  over the step; PostgreSQL's and Redis's CPU are not included (other work shares them on this
  machine): ours and eventstream write every batch to PostgreSQL, plain and resumable do not;
* the server's memory per streaming session: (peak RSS during the step - RSS once idle) / N;
* the generator's own CPU (user + sys of its processes over the same span) as a share of one
  core. Agents and devices run in ``--clients`` processes forked from this one (default 1;
  session i and its devices in process i % clients, so a token's send time and its arrival
  are read on one clock). On a 2-core machine the generator competes with the server: read
  its share beside the server's. A process near 100% of a core means the step measured the
  client, not the server; then raise ``--clients``.

What differs, on purpose or not: ours authenticates each socket with a token (one user owns
every session); the SDK also sends a heartbeat per run every 15 s (under 1% of its frames);
ours acks a publish after its commit, plain at once, and in both the agent's next batch waits
for that ack, so ours' commit time is part of its token latency (as it is for a real agent).
The servers' scratch database (next to BENCH_DATABASE_URL's, dropped afterwards) and Redis
(BENCH_REDIS_URL, a prefix of this run's own) are those of ``bench.sessions_log``.

``--workers N`` starts N processes of each system (N daphnes, uvicorns or Nodes) behind
``sessions_app.tcp_proxy`` (round robin per connection) in a process of its own; on a 2-core
machine read it as CPU per token (the cost of spreading sessions over processes), not as a
speed-up. Resumable's workers share the streams through Redis as the library intends (the
producer lives in the worker that took the POST; a device on another worker is served via
pub/sub).

Every step starts fresh servers (so no earlier step shapes memory or CPU) and, at each size,
runs the systems one after another in ``--systems`` order, so that the machine's load hits
them alike. Sizes rise until a system's
p99 passes P99_LIMIT, it loses a token, or its server uses over SATURATED of a core; that
system then stops. Its figure is the largest N holding p99 <= P99_LIMIT with nothing lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from bench.sessions_log import (
    BASE_DB,
    REDIS_URL,
    SETUP,
    Server,
    _raise_nofile,
    base_env,
    daphne,
    log,
    pct,
    spawned,
    ws_open,
    ws_subscribe,
)
from tests.e2e.servers import (
    SERVERS,
    free_port,
    manage_output,
    postgres_database,
    run_manage,
)

TOKENS_PER_SECOND = 40
ANSWER_TOKENS = 400
PAUSE_SECONDS = 2.0
SECOND_DEVICE_EVERY = 10
COALESCE_SECONDS = 0.03  # the SDK's default (SessionsClient.coalesce_seconds)
P99_LIMIT = 0.100
SATURATED = 0.95
DRAIN_SECONDS = 10.0
CONNECTS_AT_ONCE = 20
CONNECT_TIMEOUT = 300.0
SIZES = [10, 25, 50, 100, 200, 400]
QUICK_SIZES = [5, 10, 25]
TARGETS = {
    "ours": "config.asgi:application",
    "plain": "bench.plain_channels:application",
    "eventstream": "bench.eventstream_site.asgi:application",
    "resumable": "bench/resumable/server.mjs",  # Node, whatever --server says
}
SYSTEMS = list(TARGETS)


# --- tokens: what the agent sent and when, what each device received -----------------------


@dataclass
class Tape:
    """The tokens of one session: token ``i``'s text is ``f"{i} "``; ``sent[i]`` its time."""

    sent: list[float] = field(default_factory=list)

    def next_token(self) -> str:
        self.sent.append(time.perf_counter())
        return f"{len(self.sent) - 1} "


@dataclass
class Device:
    """One subscribed socket: checks order and completeness, keeps each token's latency."""

    conn: Any
    tape: Tape
    latencies: list[float] = field(default_factory=list)
    received: int = 0
    expected: int = 0  # the token that should come next
    disorder: int = 0  # tokens that came late (after a later one) or twice
    deltas: int = 0  # text deltas received (one per coalesced batch the agent sent)
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def follow(self) -> None:
        async for raw in self.conn:
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame.get("type") == "events":
                for event in frame["events"]:
                    if event.get("type") == "TEXT_MESSAGE_CONTENT":
                        self.take(event["data"]["delta"], now)
                self.progress.set()

    def take(self, delta: str, now: float) -> None:
        self.deltas += 1
        for word in delta.split():
            index = int(word)
            if index < self.expected:
                self.disorder += 1
            self.expected = max(self.expected, index + 1)
            self.latencies.append(now - self.tape.sent[index])
            self.received += 1

    async def wait_for_all(self) -> None:
        while self.received < len(self.tape.sent):
            self.progress.clear()
            await self.progress.wait()

    @property
    def lost(self) -> int:
        """Tokens never received, plus those received late or twice."""
        return max(0, len(self.tape.sent) - (self.received - self.disorder)) + self.disorder


# --- agents ----------------------------------------------------------------------------------


class OursAgent:
    """An agent on our server: the Python SDK, one client (socket) per agent."""

    def __init__(self, server: Server, token: str, session: str) -> None:
        from sessions_app.client import SessionsClient

        self.client = SessionsClient(server.base, token=token)
        self.name = session
        self.session: Any = None

    async def connect(self) -> None:
        await self.client.connect()
        self.session = await self.client.session(self.name)

    def run(self) -> AbstractAsyncContextManager[Any]:
        return self.session.run(agent="bench")

    async def close(self) -> None:
        await self.client.close()


class PlainAgent:
    """An agent on plain Channels: the SDK's frames and acknowledgement order, by hand."""

    def __init__(self, server: Server, session: str) -> None:
        self.url = server.ws
        self.name = session
        self.producer = {"id": f"py-{uuid.uuid4().hex[:12]}-{uuid.uuid4().hex[:8]}", "epoch": 0}
        self.seq = 0
        self.acks: dict[int, asyncio.Future[None]] = {}
        self.lock = asyncio.Lock()
        self.conn: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.conn = await ws_open(self.url)
        await ws_subscribe(self.conn, self.name)
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        try:
            async for raw in self.conn:
                frame = json.loads(raw)
                if frame.get("type") == "ack":
                    self.acks.pop(frame["id"]).set_result(None)
        finally:  # a publish still waiting is told, not left hanging
            for acked in self.acks.values():
                if not acked.done():
                    acked.set_exception(ConnectionError("the plain Channels socket closed"))

    async def publish(self, events: list[dict[str, Any]]) -> None:
        """One frame, acknowledged before the next goes (the SDK's producer lock)."""
        async with self.lock:
            frame_id, self.seq = self.seq, self.seq + 1
            acked = self.acks[frame_id] = asyncio.get_running_loop().create_future()
            frame = {"op": "publish", "session": self.name, "events": events,
                     "producer": {**self.producer, "seq": frame_id}, "id": frame_id}  # fmt: skip
            await self.conn.send(json.dumps(frame))
            await acked

    def run(self) -> PlainRun:
        return PlainRun(self)

    async def close(self) -> None:
        await self.conn.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader


class PlainRun:
    """A run's events as ``sessions_app.client.Run`` sends them, with its text coalescing."""

    def __init__(self, agent: PlainAgent) -> None:
        self.agent = agent
        self.id = f"run-{uuid.uuid4().hex[:10]}"
        self.message: str | None = None
        self.buffer: list[str] = []
        self.flusher: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()

    def envelope(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "run": self.id, "agent": "bench", **fields}

    async def __aenter__(self) -> PlainRun:
        await self.agent.publish([self.envelope("RUN_STARTED")])
        return self

    async def text(self, delta: str) -> None:
        if self.message is None:
            self.message = f"m-{uuid.uuid4().hex[:10]}"
            start = self.envelope("TEXT_MESSAGE_START", message=self.message,
                                  data={"role": "assistant"})  # fmt: skip
            await self.agent.publish([start])
        self.buffer.append(delta)
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self.flush_later())

    async def flush_later(self) -> None:
        await asyncio.sleep(COALESCE_SECONDS)
        while self.buffer:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            if self.buffer:
                delta, self.buffer = "".join(self.buffer), []
                data = {"delta": delta}
                content = self.envelope("TEXT_MESSAGE_CONTENT", message=self.message, data=data)
                await self.agent.publish([content])

    async def __aexit__(self, *exc: object) -> None:
        await self.flush()
        events = [self.envelope("RUN_FINISHED", data={"outcome": "success"})]
        if self.message is not None:
            events.insert(0, self.envelope("TEXT_MESSAGE_END", message=self.message))
        await self.agent.publish(events)


async def sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


async def stream_answers(agent: Any, tape: Tape, start: float, until: float) -> None:
    """Answers of ANSWER_TOKENS tokens at TOKENS_PER_SECOND with a pause between, until
    ``until`` (the answer in progress then ends early, as a whole run)."""
    begin = start
    while begin < until:
        await sleep_until(begin)
        async with agent.run() as run:
            for i in range(ANSWER_TOKENS):
                moment = begin + i / TOKENS_PER_SECOND
                if moment >= until:
                    break
                await sleep_until(moment)
                await run.text(tape.next_token())
        begin = max(time.perf_counter(), begin + ANSWER_TOKENS / TOKENS_PER_SECOND)
        begin += PAUSE_SECONDS


# --- one step: N sessions against one fresh server -----------------------------------------


@dataclass
class Step:
    """What one system did at one size."""

    system: str
    sessions: int
    seconds: float  # from the first token until every device had everything (or gave up)
    latencies: list[float]
    lost: int
    server_cpu: float  # seconds, user + sys
    client_cpu: float
    idle_kb: int
    peak_kb: int
    workers: int = 1
    proxy_cpu: float = 0.0  # the TCP proxy's CPU seconds (several workers only)
    deltas: int = 0  # text deltas the devices received: deliveries / deltas = tokens a batch

    @property
    def deliveries(self) -> int:
        return len(self.latencies)

    @property
    def cpu_per_1000(self) -> float:
        return self.server_cpu / max(self.deliveries, 1) * 1000

    @property
    def server_share(self) -> float:
        return self.server_cpu / self.seconds

    @property
    def client_share(self) -> float:
        return self.client_cpu / self.seconds

    @property
    def kb_per_session(self) -> float:
        return (self.peak_kb - self.idle_kb) / self.sessions

    @property
    def holds(self) -> bool:
        return bool(self.latencies) and self.lost == 0 and pct(self.latencies, 0.99) <= P99_LIMIT

    @property
    def last(self) -> bool:
        """The step after which sizes stop rising for this system."""
        return not self.holds or self.server_share > SATURATED

    def summary(self) -> dict[str, Any]:
        """The step's figures (latencies in seconds, memory in KB), for ``--json``."""
        lat = self.latencies or [float("nan")]
        return {"system": self.system, "sessions": self.sessions, "seconds": self.seconds,
                "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "p999": pct(lat, 0.999),
                "lost": self.lost, "deliveries": self.deliveries, "deltas": self.deltas,
                "cpu_per_1000": self.cpu_per_1000, "server_share": self.server_share,
                "kb_per_session": self.kb_per_session, "generator_share": self.client_share,
                "holds": self.holds, "workers": self.workers,
                "proxy_share": self.proxy_cpu / self.seconds}  # fmt: skip

    def line(self) -> str:
        lat = self.latencies or [float("nan")]
        proxy = f"  proxy {self.proxy_cpu / self.seconds:.0%}" if self.workers > 1 else ""
        return (
            f"{self.system:11} N={self.sessions:<4} p50 {pct(lat, 0.5) * 1e3:6.1f} ms  "
            f"p99 {pct(lat, 0.99) * 1e3:6.1f} ms  p99.9 {pct(lat, 0.999) * 1e3:6.1f} ms  "
            f"lost {self.lost}  {self.deliveries} deliveries "
            f"({self.deliveries / max(self.deltas, 1):.1f} a batch)  "
            f"server CPU {self.cpu_per_1000:.3f} s/1000 tokens ({self.server_share:.0%} of a "
            f"core{f', summed over {self.workers} workers' if self.workers > 1 else ''})  "
            f"{self.kb_per_session:.0f} KB/session  generator {self.client_share:.0%}{proxy}"
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_agent(system: str, server: Server, token: str, session: str) -> Any:
    from bench import capacity_peers as peers

    if system == "resumable":
        return peers.ResumableAgent(server, session)
    if system == "eventstream":
        return peers.EventstreamAgent(server, session)
    return OursAgent(server, token, session) if system == "ours" else PlainAgent(server, session)


async def open_device(system: str, server: Server, token: str, session: str, tape: Tape) -> Device:
    if system in ("resumable", "eventstream"):
        from bench.capacity_peers import open_sse_device

        return await open_sse_device(system, server, session, tape)
    url = server.ws + (f"?token={token}" if system == "ours" else "")
    conn = await ws_open(url)
    await ws_subscribe(conn, session, "now")
    return Device(conn, tape)


async def connect_all(
    system: str, server: Server, token: str, sessions: list[tuple[str, int]]
) -> tuple[list[Any], list[Device], list[Tape]]:
    """An agent and its device(s) per (session, devices), CONNECTS_AT_ONCE at a time."""
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    tapes = [Tape() for _ in sessions]
    agents = [make_agent(system, server, token, name) for name, _ in sessions]

    async def agent_up(agent: Any) -> None:
        async with gate:
            await agent.connect()

    async def device_up(i: int) -> Device:
        async with gate:
            return await open_device(system, server, token, sessions[i][0], tapes[i])

    await asyncio.gather(*(agent_up(a) for a in agents))
    wanted = [i for i, (_, count) in enumerate(sessions) for _ in range(count)]
    devices = await asyncio.gather(*(device_up(i) for i in wanted))
    if system == "eventstream":
        await asyncio.sleep(0.5)  # its Redis listener subscribes in the background
    return agents, list(devices), tapes


async def close_device(device: Device) -> None:
    from bench.capacity_peers import close_device as close_sse

    await (close_sse(device) if type(device) is not Device else device.conn.close())


# --- generator processes: each runs the agents and devices of its share of the sessions ------


@dataclass
class Share:
    """What one generator process measured."""

    latencies: list[float]
    lost: int
    cpu: float  # its own CPU seconds over the timed span
    ended: float  # perf_counter (CLOCK_MONOTONIC: the same clock in every process)
    deltas: int = 0


async def stream_and_drain(agents: list[Any], devices: list[Device], tapes: list[Tape],
                           start: float, until: float) -> None:  # fmt: skip
    """Stream from ``start`` to ``until``, then give the devices DRAIN_SECONDS to catch up."""
    # Agents start spread over one second, so that their batches do not fall in step.
    offsets = [start + i / len(agents) for i in range(len(agents))]
    await asyncio.gather(*(stream_answers(a, t, o, until)
                           for a, t, o in zip(agents, tapes, offsets, strict=True)))  # fmt: skip
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(d.wait_for_all() for d in devices)), DRAIN_SECONDS)


async def generate(
    system: str, server: Server, token: str, sessions: list[tuple[str, int]], seconds: float,
    pipe: Connection,
) -> None:  # fmt: skip
    """Connect, tell the parent, stream from the start time it sends back, send it the Share
    (before disconnecting: that is not part of the measured span)."""
    agents, devices, tapes = await connect_all(system, server, token, sessions)
    followers = [asyncio.create_task(d.follow()) for d in devices]
    try:
        pipe.send("ready")
        start = await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        cpu = -own_cpu()
        await stream_and_drain(agents, devices, tapes, start, start + seconds)
        ended, cpu = time.perf_counter(), cpu + own_cpu()
        latencies = [x for d in devices for x in d.latencies]
        deltas = sum(d.deltas for d in devices)
        pipe.send(Share(latencies, sum(d.lost for d in devices), cpu, ended, deltas))
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        await asyncio.gather(*(a.close() for a in agents), return_exceptions=True)
        await asyncio.gather(*(close_device(d) for d in devices), return_exceptions=True)


def generator(
    system: str, server: Server, token: str, sessions: list[tuple[str, int]], seconds: float,
    pipe: Connection,
) -> None:  # fmt: skip
    """A generator process's body; an error goes to the parent as text."""
    try:
        asyncio.run(generate(system, server, token, sessions, seconds, pipe))
    except BaseException as exc:
        pipe.send(f"generator failed: {exc!r}")
        raise


def start_generators(
    system: str, server: Server, token: str, names: list[str], seconds: float, clients: int
) -> list[tuple[BaseProcess, Connection]]:
    """``clients`` processes, session i in process i % clients; returns once all connected."""
    context = multiprocessing.get_context("fork")
    sessions = [(name, 2 if i % SECOND_DEVICE_EVERY == 0 else 1) for i, name in enumerate(names)]
    started: list[tuple[BaseProcess, Connection]] = []
    for k in range(clients):
        ours, theirs = context.Pipe()
        args = (system, server, token, sessions[k::clients], seconds, theirs)
        process = context.Process(target=generator, args=args, daemon=True)
        process.start()
        started.append((process, ours))
    for _, pipe in started:
        expect(pipe, str, CONNECT_TIMEOUT)
    return started


def expect(pipe: Connection, kind: type, timeout: float) -> Any:
    """The next message from a generator, which must be a ``kind``."""
    if not pipe.poll(timeout):
        raise TimeoutError(f"a generator process said nothing for {timeout:g} s")
    message = pipe.recv()
    if isinstance(message, str) and message.startswith("generator failed"):
        raise RuntimeError(message)
    if not isinstance(message, kind):
        raise RuntimeError(f"unexpected message from a generator: {message!r}")
    return message


def run_load(
    system: str, server: Fleet, token: str, names: list[str], seconds: float, clients: int
) -> tuple[float, list[Share], float, int, float]:
    """The timed span: (elapsed, shares, server CPU seconds summed over its workers, peak
    server RSS in KB summed likewise, the proxy's CPU seconds).

    Connecting and disconnecting happen outside it.
    """
    generators = start_generators(system, server, token, names, seconds, clients)
    try:
        server_cpu, proxy_cpu = -server.cpu(), -server.proxy_cpu()
        start = time.perf_counter() + 0.1
        for _, pipe in generators:
            pipe.send(start)
        peak = server.rss_kb()
        deadline = start + seconds + DRAIN_SECONDS + 60
        while not all(pipe.poll() for _, pipe in generators) and time.perf_counter() < deadline:
            time.sleep(0.5)
            peak = max(peak, server.rss_kb())
        server_cpu, proxy_cpu = server_cpu + server.cpu(), proxy_cpu + server.proxy_cpu()
        shares = [expect(pipe, Share, 0) for _, pipe in generators]
    finally:
        for process, _ in generators:
            process.join(30)
            if process.is_alive():
                process.kill()
    return max(s.ended for s in shares) - start, shares, server_cpu, peak, proxy_cpu


def measure_step(
    system: str, server: Fleet, token: str, names: list[str], seconds: float, clients: int
) -> Step:
    # Warm-up: imports, the channel layer's and database's first connections, thread pools.
    run_load(system, server, token, ["cap-warm"], 1.0, 1)
    time.sleep(1.0)
    idle_kb = server.rss_kb()
    elapsed, shares, server_cpu, peak_kb, proxy_cpu = run_load(
        system, server, token, names, seconds, clients
    )
    return Step(
        system=system, sessions=len(names), seconds=elapsed,
        latencies=[x for s in shares for x in s.latencies], lost=sum(s.lost for s in shares),
        deltas=sum(s.deltas for s in shares),
        server_cpu=server_cpu, client_cpu=sum(s.cpu for s in shares),
        idle_kb=idle_kb, peak_kb=peak_kb, workers=len(server.pids), proxy_cpu=proxy_cpu,
    )  # fmt: skip


# --- servers ---------------------------------------------------------------------------------


@contextmanager
def uvicorn(target: str, env: dict[str, str]) -> Iterator[Server]:
    """``uvicorn target`` (one worker) on a free loopback port, as tests/e2e starts it.

    Without its access log: daphne writes none by default either.
    """
    port = free_port()
    args = [a.format(port=port) for a in SERVERS["uvicorn"]]
    args += ["--no-access-log", "--log-level", "warning", "--lifespan", "off", target]
    with spawned([sys.executable, *args], port, f"uvicorn {target}", env=env) as server:
        yield server


def serve(kind: str, target: str, env: dict[str, str]) -> contextlib.AbstractContextManager[Server]:
    return daphne(target, env) if kind == "daphne" else uvicorn(target, env)


@dataclass
class Fleet(Server):
    """One system's server processes for a step: one, or several behind the TCP proxy
    (``base`` is then the proxy's; ``pid`` the first worker's)."""

    pids: list[int] = field(default_factory=list)
    proxy_pid: int | None = None

    def rss_kb(self) -> int:
        return sum(Server(self.base, pid).rss_kb() for pid in self.pids)

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def proxy_cpu(self) -> float:
        return 0.0 if self.proxy_pid is None else cpu_seconds(self.proxy_pid)


@contextmanager
def tcp_proxy(upstreams: list[str]) -> Iterator[Server]:
    """``python -m sessions_app.tcp_proxy`` (round robin per connection) in its own process."""
    port = free_port()
    args = ["-m", "sessions_app.tcp_proxy", "--listen", f"127.0.0.1:{port}", *upstreams]
    with spawned([sys.executable, *args], port, "proxy", complain=None) as server:
        yield server


@contextmanager
def serve_fleet(system: str, kind: str, env: dict[str, str], workers: int) -> Iterator[Fleet]:
    """``workers`` fresh servers of ``system``; more than one go behind the TCP proxy."""
    from bench.capacity_peers import node_server

    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(
                node_server(env) if system == "resumable" else serve(kind, TARGETS[system], env)
            )
            for _ in range(workers)
        ]
        pids = [s.pid for s in servers]
        if workers == 1:
            yield Fleet(servers[0].base, servers[0].pid, pids)
        else:
            proxy = stack.enter_context(
                tcp_proxy([s.base.removeprefix("http://") for s in servers])
            )
            yield Fleet(proxy.base, servers[0].pid, pids, proxy.pid)


@dataclass
class Plan:
    """What to run: the ASGI server, the sizes, each step's streaming time, the generators."""

    server: str
    sizes: list[int]
    seconds: float
    clients: int
    keep_going: bool  # run every size, even after a system's last step
    systems: list[str] = field(default_factory=lambda: list(SYSTEMS))
    workers: int = 1


def run_sizes(plan: Plan, envs: dict[str, dict[str, str]], token: str) -> list[Step]:
    """Raise N through the sizes for every system; a system stops after its last step."""
    steps: list[Step] = []
    going = list(plan.systems)
    for n in plan.sizes:
        for system in list(going):
            kind = "node" if system == "resumable" else plan.server
            log(f"{system} under {kind} x{plan.workers}: {n} sessions for {plan.seconds:g} s")
            names = [f"cap-{i}" for i in range(n)]
            with serve_fleet(system, plan.server, envs[system], plan.workers) as server:
                step = measure_step(system, server, token, names, plan.seconds, plan.clients)
            steps.append(step)
            log(step.line())
            if step.last and not plan.keep_going:
                going.remove(system)
        if not going:
            break
    return steps


def run_all(plan: Plan) -> list[Step]:
    _raise_nofile()
    names = ["cap-warm"] + [f"cap-{i}" for i in range(max(plan.sizes))]
    from bench.capacity_peers import forget_keys, node_env

    prefix = f"bench{os.getpid()}-rs"
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(postgres_database(BASE_DB, f"bench_cap_{os.getpid()}"))
        ours_env = base_env(DATABASE_URL=db, DJANGO_SETTINGS_MODULE="bench.sessions_settings")
        envs = {"ours": ours_env, "plain": base_env(DJANGO_SETTINGS_MODULE="bench.plain_settings"),
                "resumable": node_env(REDIS_URL, prefix)}  # fmt: skip
        log("migrating the scratch database")
        run_manage("migrate", "--no-input", env=ours_env)
        out = manage_output("shell", "-c", SETUP.format(names=names), env=ours_env)
        token = out.strip().splitlines()[-1]
        if "eventstream" in plan.systems:
            es_db = stack.enter_context(postgres_database(BASE_DB, f"bench_cap_es_{os.getpid()}"))
            envs["eventstream"] = base_env(
                DATABASE_URL=es_db, DJANGO_SETTINGS_MODULE="bench.eventstream_site.settings"
            )
            run_manage("migrate", "--no-input", env=envs["eventstream"])
        try:
            return run_sizes(plan, envs, token)
        finally:
            if "resumable" in plan.systems:
                forget_keys(REDIS_URL, prefix)


# --- report ----------------------------------------------------------------------------------


def figure(steps: list[Step], system: str) -> int:
    """The largest N that held p99 <= P99_LIMIT with nothing lost (0: none did)."""
    held = [s.sessions for s in steps if s.system == system and s.holds]
    return max(held, default=0)


def report(steps: list[Step], plan: Plan, loadavg: tuple[float, float]) -> str:
    lines = [f"ASGI server: {plan.server} (resumable: node), {plan.workers} process(es) per "
             f"system{' behind the TCP proxy' if plan.workers > 1 else ''}; "
             f"{plan.clients} generator process(es); "
             f"{plan.seconds:g} s a step; 1-minute load average {loadavg[0]:.1f} at the start, "
             f"{loadavg[1]:.1f} at the end ({os.cpu_count()} cores)."]  # fmt: skip
    lines += [step.line() for step in steps]
    for system in plan.systems:
        lines.append(
            f"{system}: largest N with p99 <= {P99_LIMIT * 1e3:.0f} ms and nothing lost: "
            f"{figure(steps, system)}"
        )
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are positive integers, e.g. 10,25,50")
    return sizes


def parse_systems(text: str) -> list[str]:
    systems = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        raise argparse.ArgumentTypeError(f"systems are some of {','.join(SYSTEMS)}")
    return list(dict.fromkeys(systems))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, help="sessions per step, e.g. 10,25,50")
    parser.add_argument("--seconds", type=float, help="streaming time per step (default 20)")
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}, 8 s a step")
    parser.add_argument("--server", choices=sorted(SERVERS), default="daphne")
    parser.add_argument(
        "--keep-going", action="store_true", help="run every size, even past a system's limit"
    )
    parser.add_argument(
        "--clients", type=int, default=1, help="generator processes to split the sessions over"
    )
    parser.add_argument(
        "--systems", type=parse_systems, default=list(SYSTEMS),
        help=f"comma-separated, from {','.join(SYSTEMS)} (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes per system (behind the TCP proxy)"
    )
    parser.add_argument("--json", type=Path, help="also save every step's figures here")
    args = parser.parse_args()
    plan = Plan(
        server=args.server,
        sizes=args.sizes or (QUICK_SIZES if args.quick else SIZES),
        seconds=args.seconds or (8.0 if args.quick else 20.0),
        clients=max(1, args.clients),
        keep_going=args.keep_going,
        systems=args.systems,
        workers=max(1, args.workers),
    )
    started = os.getloadavg()[0]
    steps = run_all(plan)
    loadavg = (started, os.getloadavg()[0])
    print(report(steps, plan, loadavg))
    if args.json:
        saved = {"plan": plan.__dict__, "load": loadavg, "steps": [s.summary() for s in steps]}
        args.json.write_text(json.dumps(saved, indent=1))


if __name__ == "__main__":
    main()
