"""Chaos and fuzzing, the long run of the tests in tests/e2e/test_chaos.py and tests/sessions_app.

    .venv/bin/python -m bench chaos                 # 100 kill cycles, 5 Redis restarts,
                                                    # >= 10,000 fuzzed WebSocket frames,
                                                    # 100 schemathesis examples per operation
    .venv/bin/python -m bench chaos --quick         # 5 cycles, 1 restart, 300 frames, 5 examples
    .venv/bin/python -m bench chaos --write         # and record the figures in bench/README.md

The cluster is the tests' own (tests/e2e/chaos/): a throwaway PostgreSQL and Redis on free
loopback ports, two daphne workers, a balancing TCP proxy, an SDK agent and four subscribers.
The machine's shared PostgreSQL and Redis are never touched. Fuzzing runs the same pytest tests
with larger example counts (first pass: SQLite + in-memory layer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"


def kill_cycles(cycles: int, restarts: int) -> dict[str, Any]:
    from tests.e2e.chaos.clients import Agent, Subscriber, check_exactly_once, wait_until
    from tests.e2e.chaos.cluster import Cluster

    cluster = Cluster().start(["kill", "redis"])

    async def kills() -> dict[str, Any]:
        subs = [Subscriber(cluster.url, cluster.token, "kill").start() for _ in range(4)]
        agent = await Agent(cluster.url, cluster.key, "kill").start()
        began, downtimes = time.monotonic(), []
        for cycle in range(cycles):
            downtimes.append(await asyncio.to_thread(cluster.kill_and_restart, cycle % 2))
            await asyncio.sleep(0.1)
        await agent.stop()
        log = cluster.history("kill")
        check_exactly_once(log, agent.acked, "the log")
        for sub in subs:
            await wait_until(lambda s=sub: len(s.events) >= len(log), 30)
        await asyncio.sleep(0.5)
        for i, sub in enumerate(subs):
            check_exactly_once(sub.events, agent.acked, f"subscriber {i}")
            assert len(sub.events) == len(log), "subscriber has more or fewer entries than the log"
            await sub.stop()
        return {"cycles": cycles, "seconds": time.monotonic() - began, "entries": len(log),
                "acked": len(agent.acked), "resubscribes": sum(s.reconnects for s in subs),
                "agent_reconnects": agent.client.reconnects,
                "restart_s": sorted(downtimes)[len(downtimes) // 2]}  # fmt: skip

    async def redis_restarts() -> list[float]:
        subs = [Subscriber(cluster.url, cluster.token, "redis").start() for _ in range(4)]
        agent = await Agent(cluster.url, cluster.key, "redis").start()
        recoveries = []
        for _ in range(restarts):
            await wait_until(lambda: len(agent.acked) > 10, 10)
            await asyncio.to_thread(cluster.redis.restart)
            back, mark = time.monotonic(), len(agent.acked)
            ok = await wait_until(
                lambda m=mark: (
                    len(agent.acked) > m and all(agent.acked[m] in s.values() for s in subs)
                ),
                10,
                step=0.01,
            )
            recoveries.append(time.monotonic() - back if ok else float("inf"))
            await asyncio.sleep(1)
        await agent.stop()
        log = cluster.history("redis")
        for i, sub in enumerate(subs):
            await wait_until(lambda s=sub: len(s.events) >= len(log), 30)
            check_exactly_once(sub.events, agent.acked, f"subscriber {i}")
            await sub.stop()
        return recoveries

    try:
        result = asyncio.run(kills())
        result["redis_recoveries"] = asyncio.run(redis_restarts()) if restarts else []
    finally:
        cluster.stop()
    return result


def pytest_run(target: str, env: dict[str, str]) -> tuple[bool, str, float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", target, "-q", "-p", "no:cacheprovider",
         "-o", "timeout=7200", "-x"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
    )  # fmt: skip
    tail = [line for line in done.stdout.splitlines() if line.strip()][-1:]
    return done.returncode == 0, (tail[0] if tail else done.stderr[-300:]), time.monotonic() - began


def fuzz_websocket(frames: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".count", delete=False) as handle:
        count_file = Path(handle.name)
    sent, seconds, ok, tail = 0, 0.0, True, ""
    for _ in range(20):  # each run draws fresh examples; stop once past the target
        # Examples carry 1 to 6 frames; ask for enough to pass what is left of the target.
        env = {"FUZZ_WS_EXAMPLES": str(max(10, (frames - sent) // 2)),
               "FUZZ_WS_COUNT_FILE": str(count_file), "TEST_ENGINES": ""}  # fmt: skip
        ok, tail, took = pytest_run(
            "tests/sessions_app/test_fuzz_websocket.py::"
            "test_fuzzed_frames_are_answered_and_write_only_what_is_acknowledged",
            env,
        )
        seconds += took
        sent = sum(int(line) for line in count_file.read_text().split())
        if not ok or sent >= frames:
            break
    count_file.unlink()
    return {"ok": ok, "frames": sent, "seconds": seconds, "tail": tail}


def fuzz_rest(examples: int) -> dict[str, Any]:
    ok, tail, seconds = pytest_run(
        "tests/sessions_app/test_fuzz_openapi.py", {"FUZZ_REST_EXAMPLES": str(examples)}
    )
    return {"ok": ok, "examples": examples, "seconds": seconds, "tail": tail}


def report(kill: dict[str, Any], ws: dict[str, Any], rest: dict[str, Any], args: Any) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    recoveries = kill["redis_recoveries"]
    worst = f"{max(recoveries):.2f} s" if recoveries else "—"
    flags = " --quick" if args.quick else ""
    if args.rest_examples:
        flags += f" --rest-examples {args.rest_examples}"
    return "\n".join([
        BEGIN,
        "## Chaos and fuzzing",
        "",
        f"Command: `.venv/bin/python -m bench chaos{flags} --write` (recorded {stamp}). The "
        "same code as `tests/e2e/test_chaos.py` and the fuzz tests, run longer; what each "
        "run promises is in [docs/guarantees.md](../docs/guarantees.md).",
        "",
        "| scenario | size | result |",
        "| --- | --- | --- |",
        f"| kill -9 a worker mid-stream, restart, resume (2 workers, 4 subscribers, SDK agent) "
        f"| {kill['cycles']} cycles, {kill['acked']} acknowledged appends, "
        f"{kill['resubscribes']} resubscribes, {kill['seconds']:.0f} s | every subscriber: every "
        f"acknowledged entry exactly once, in order, no gap (median restart "
        f"{kill['restart_s']:.1f} s) |",
        f"| restart Redis mid-stream | {len(recoveries)} restarts | live delivery back after at "
        f"most {worst}; nothing lost or repeated |",
        f"| hypothesis over WebSocket frames | {ws['frames']:,} frames, {ws['seconds']:.0f} s "
        f"| {'no crash, every frame answered, nothing written unless acknowledged' if ws['ok'] else 'FAILED: ' + ws['tail']} |",
        f"| schemathesis over every REST operation (both apps) | {rest['examples']} examples "
        f"per operation, {rest['seconds']:.0f} s | {'no 5xx; nothing written when refused' if rest['ok'] else 'FAILED: ' + rest['tail']} |",
        END,
    ])  # fmt: skip


def write(section: str) -> None:
    path = ROOT / "bench" / "README.md"
    text = path.read_text()
    if BEGIN in text:
        text = re.sub(
            re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S
        )
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--cycles", type=int, help="kill cycles (default 100; quick 5)")
    parser.add_argument("--frames", type=int, help="fuzzed WebSocket frames (10,000; quick 300)")
    parser.add_argument("--rest-examples", type=int, help="per REST operation (100; quick 5)")
    parser.add_argument("--write", action="store_true", help="record the figures in README.md")
    args = parser.parse_args()
    cycles = args.cycles or (5 if args.quick else 100)
    frames = args.frames or (300 if args.quick else 10_000)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")  # DEBUG is off
    kill = kill_cycles(cycles, 1 if args.quick else 5)
    print(f"kill cycles: {kill}", flush=True)
    ws = fuzz_websocket(frames)
    print(f"websocket fuzz: {ws}", flush=True)
    rest = fuzz_rest(args.rest_examples or (5 if args.quick else 100))
    print(f"rest fuzz: {rest}", flush=True)
    section = report(kill, ws, rest, args)
    print(section)
    if args.write:
        write(section)
    if not (ws["ok"] and rest["ok"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
