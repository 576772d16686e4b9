"""@ag-ui/client 1.0 (HttpAgent, and our subclass with connect()) against the AG-UI door, with
the real demo agent answering on the log."""

from __future__ import annotations

import pytest

from tests.e2e.agui.site import agent_site, node, run_status, run_text, snapshot

# Protocol clients against the doors: run once, on the production engines (second pass).
pytestmark = [pytest.mark.e2e, pytest.mark.real_engines, pytest.mark.timeout(180)]
THREADS = ["agui-run", "agui-abort", "agui-cancel", "agui-team"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with agent_site(tmp_path_factory.mktemp("agui"), "agui", THREADS) as site:
        yield site


def agui(site, scenario, thread):
    return node("agui.mjs", scenario, site["base"], site["key"], thread)


def test_http_agent_ends_with_the_agents_message_and_the_final_state(site):
    out = agui(site, "run", "agui-run")
    log = snapshot(site, "agui-run")
    assert out["failures"] == [] and out["outcomes"] == ["success"]
    user, answer = out["messages"]
    assert user["role"] == "user" and answer["role"] == "assistant"
    assert answer["content"] == run_text(log, out["runId"]) and len(answer["content"]) > 100
    assert out["newMessages"] == [answer]
    # Another producer set the shared state during the run; the client ends with it.
    assert out["state"] == {"stage": "answered", "by": out["runId"]} == log["state"]


def test_abort_then_connect_completes_the_message_once(site):
    out = agui(site, "abort-reconnect", "agui-abort")
    log = snapshot(site, "agui-abort")
    assert out["failures"] == [] and out["errors"] == ["abort"]  # the client's own abort
    answers = [m for m in out["messages"] if m["role"] == "assistant"]
    assert len(answers) == 1
    full = run_text(log, out["runId"])
    assert out["atAbort"]["text"] and len(out["atAbort"]["text"]) < len(full)
    assert answers[0]["content"] == full
    assert "MESSAGES_SNAPSHOT" in out["events"] and out["outcomes"] == ["success"]
    assert run_status(log, out["runId"]) == "finished"  # aborting the request is not a cancel


def test_the_cancel_endpoint_ends_the_run_with_the_cancelled_outcome(site):
    out = agui(site, "cancel", "agui-cancel")
    log = snapshot(site, "agui-cancel")
    assert out["failures"] == [] and out["outcomes"] == ["cancelled"]
    assert out["cancel"]["cancelled"] == [out["runId"]]
    assert run_status(log, out["runId"]) == "cancelled"
    answer = out["messages"][-1]
    assert answer["role"] == "assistant" and answer["content"] == run_text(log, out["runId"])
    assert out["events"][-3:] == ["CUSTOM", "TEXT_MESSAGE_END", "RUN_FINISHED"]


def test_sub_agents_arrive_as_sub_agent_events_the_client_accepts(site):
    out = agui(site, "team", "agui-team")
    log = snapshot(site, "agui-team")
    assert out["failures"] == [] and out["outcomes"] == ["success"]
    assert sorted(out["subagents"]) == ["critic", "researcher"]
    children = {r["id"]: r["agent"] for r in log["runs"] if r["parent"] == out["runId"]}
    by_agent = {
        children[m["subagentRunId"]]: m["content"] for m in out["messages"] if "subagentRunId" in m
    }
    assert by_agent == {agent: run_text(log, run) for run, agent in children.items()}
    assert out["messages"][-1]["content"].startswith("Both are done")
