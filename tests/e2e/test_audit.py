"""The delivery audit end to end: an AI SDK endpoint built with the `ai` package's own server
helpers (without and with resume), and this project's own doors (AG-UI, AI SDK, WebSocket),
which come out all green.

The Python fixtures (plain SSE, SSE with ids, pydantic-ai's AG-UI server) are in
tests/sessions_app/audit/test_fixtures.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sessions_app.audit import run_audit
from sessions_app.audit.report import to_text
from tests.e2e.agui.site import agent_site
from tests.e2e.node import ensure_node_modules

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
HERE = Path(__file__).resolve().parent / "audit"


@contextmanager
def aisdk_server(mode: str) -> Iterator[str]:
    """``node aisdk_server.mjs [resume]``; yields its chat URL (DefaultChatTransport's api)."""
    ensure_node_modules(HERE, "the delivery audit's AI SDK fixture")
    proc = subprocess.Popen(
        ["node", "aisdk_server.mjs", mode], cwd=HERE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        yield f"http://127.0.0.1:{port}/api/chat"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def summaries(report, capability: str) -> list[str]:
    found = next(c for c in report.capabilities if c.name == capability)
    return [f"{f.verdict.value}: {f.summary}" for f in found.findings]


@pytest.mark.engine_independent
def test_an_ai_sdk_endpoint_without_resume_loses_the_answer_and_cannot_stop():
    with aisdk_server("plain") as url:
        report = run_audit(url, "aisdk", timeout=20)
    assert report.gap_map() == {
        "delivery": "red", "continuity": "red", "control": "red", "visibility": "amber",
    }  # fmt: skip
    assert summaries(report, "delivery")[0].startswith("red: cannot resume (HTTP 404)")
    assert summaries(report, "continuity")[0].startswith("red: a second connection sees nothing")
    assert summaries(report, "control")[0].startswith("red: no explicit stop")


@pytest.mark.engine_independent
def test_an_ai_sdk_endpoint_with_resume_delivers_but_nothing_stops_the_generation():
    with aisdk_server("resume") as url:
        report = run_audit(url, "aisdk", timeout=20)
    assert report.gap_map() == {
        "delivery": "green", "continuity": "green", "control": "red", "visibility": "amber",
    }  # fmt: skip
    assert summaries(report, "delivery") == [
        "green: resumes exactly: nothing lost, nothing repeated",
        "green: the cut did not stop the generation: the answer went on",
    ]
    control = next(c for c in report.capabilities if c.name == "control").findings[0]
    assert control.summary.startswith("nothing stops the generation")  # resume works, so...
    assert control.details == ("the stop request answered HTTP 404",)


THREADS = ["audit-agui", "audit-aisdk", "audit-ws"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with agent_site(tmp_path_factory.mktemp("audit"), "audit", THREADS) as s:
        yield s


DOORS = [
    ("agui", "/sessions/agui/", "audit-agui"),
    ("aisdk", "/sessions/aisdk/chat", "audit-aisdk"),
    ("ws", "/ws/sessions/", "audit-ws"),
]


@pytest.mark.real_engines
def test_this_projects_doors_come_out_all_green(site):
    # One door after the other: the demo agent answers on one socket, and three /team answers
    # at once pass the server's frame rate (MAX_FRAMES_PER_SECOND), which fails a run.
    for protocol, path, thread in DOORS:
        report = run_audit(
            site["base"] + path,
            protocol,
            headers={"Authorization": f"Bearer {site['key']}"},
            thread=thread,
            prompt="/team plan the launch",  # the demo agent's sub-agents: progress to see
            timeout=30,
        )
        assert report.green, to_text(report, evidence=True)
        assert summaries(report, "delivery") == [
            "green: resumes exactly: nothing lost, nothing repeated",
            "green: the cut did not stop the generation: the answer went on",
        ]
        assert summaries(report, "control")[0].startswith("green: an explicit stop")
        assert report.figures.stop_to_end_s is not None
