"""Two ASGI workers on PostgreSQL + Redis: a stream broken on one worker continues on the other.

The POST (and the agent) are on the first worker; the reconnect lands on the second, which
wakes on the channel layer's notifications and reads the shared database.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.agui.site import agent_site, node, run_status, run_text, snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.real_engines, pytest.mark.timeout(180)]
# An answer takes about two seconds (node's start-up and the agent's pace add a few more on a
# loaded machine). A stream that missed the wake-ups would only see new entries at each
# keep-alive tick, here 120 s (longer than node's 60 s limit), so a scenario that takes most of
# a minute means lost notifications, whatever the machine's load.
KEEPALIVE = 120.0
WITHIN = 45.0


def timed(*args):
    start = time.monotonic()
    out = node(*args)
    return out, time.monotonic() - start


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    sessions = ["workers-agui", "workers-aisdk"]
    settings = {"DOORS_KEEPALIVE_SECONDS": KEEPALIVE, "DOORS_RUN_START_TIMEOUT": KEEPALIVE}
    folder = tmp_path_factory.mktemp("workers")
    with agent_site(folder, "workers", sessions, workers=2, settings=settings) as site:
        yield site


def test_an_ag_ui_run_aborted_on_one_worker_completes_through_the_other(site):
    out, took = timed("agui.mjs", "abort-reconnect", site["base1"], site["key"], "workers-agui",
                      site["base2"])  # fmt: skip
    assert took < WITHIN
    log = snapshot(site, "workers-agui")
    answers = [m for m in out["messages"] if m["role"] == "assistant"]
    assert out["failures"] == [] and out["outcomes"] == ["success"]
    assert len(answers) == 1 and answers[0]["content"] == run_text(log, out["runId"])
    assert len(out["atAbort"]["text"]) < len(answers[0]["content"])


def test_an_ai_sdk_stream_stopped_on_one_worker_resumes_on_the_other(site):
    out, took = timed("aisdk.mjs", "ai", "stop-resume", site["base1"], site["key"],
                      "workers-aisdk", site["base2"])  # fmt: skip
    assert took < WITHIN
    log = snapshot(site, "workers-aisdk")
    first, resumed = out["first"], out["resumed"]
    assert resumed is not None and resumed["text"] == run_text(log, first["id"])
    assert resumed["types"][-1] == "finish" and run_status(log, first["id"]) == "finished"
