"""The Vercel AI SDK (ai 5 and the latest) against the UI message stream door, with the real
demo agent answering on the log: DefaultChatTransport + readUIMessageStream."""

from __future__ import annotations

import pytest

from tests.e2e.agui.site import agent_site, node, run_status, run_text, snapshot

# Protocol clients against the doors: run once, on the production engines (second pass).
pytestmark = [pytest.mark.e2e, pytest.mark.real_engines, pytest.mark.timeout(180)]
PACKAGES = ["ai5", "ai"]
CHATS = [f"{pkg}-{what}" for pkg in PACKAGES for what in ("chat", "resume", "chat-resume", "stop")]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with agent_site(tmp_path_factory.mktemp("aisdk"), "aisdk", CHATS) as site:
        yield site


def aisdk(site, package, scenario, chat):
    return node("aisdk.mjs", package, scenario, site["base"], site["key"], chat)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_transport_streams_the_agents_answer_as_one_message(site, package):
    out = aisdk(site, package, "chat", f"{package}-chat")
    log = snapshot(site, f"{package}-chat")
    first = out["first"]
    assert first["errors"] == [] and first["types"][-1] == "finish"
    assert first["text"] == run_text(log, first["id"]) and len(first["text"]) > 100
    assert out["resumeAfterEnd"] == "none"  # 204: nothing going any more


@pytest.mark.parametrize("package", PACKAGES)
def test_stop_then_resume_stream_ends_with_the_full_message_once(site, package):
    out = aisdk(site, package, "stop-resume", f"{package}-resume")
    log = snapshot(site, f"{package}-resume")
    first, resumed = out["first"], out["resumed"]
    assert first["types"][-1] == "stream-error:AbortError"  # stop(): the fetch was aborted
    assert resumed is not None and resumed["errors"] == []
    full = run_text(log, first["id"])
    assert resumed["id"] == first["id"] and resumed["text"] == full
    assert len(first["text"]) < len(full) and resumed["types"][-1] == "finish"
    assert run_status(log, first["id"]) == "finished"  # a disconnect is not a cancel


@pytest.mark.parametrize("package", PACKAGES)
def test_chat_stop_then_resume_stream_keeps_one_complete_answer(site, package):
    out = aisdk(site, package, "chat-stop-resume", f"{package}-chat-resume")
    log = snapshot(site, f"{package}-chat-resume")
    answer_id = out["atStop"]["id"]
    full = run_text(log, answer_id)
    assert out["error"] is None and out["status"] == "ready"
    assert 0 < len(out["atStop"]["text"]) < len(full)
    assert [m["role"] for m in out["messages"]] == ["user", "assistant"]
    assert out["messages"][-1] == {"id": answer_id, "role": "assistant", "text": full}
    assert run_status(log, answer_id) == "finished"


@pytest.mark.parametrize("package", PACKAGES)
def test_the_stop_endpoint_cancels_the_run_and_the_stream_ends_with_abort(site, package):
    out = aisdk(site, package, "stop-endpoint", f"{package}-stop")
    log = snapshot(site, f"{package}-stop")
    first = out["first"]
    assert out["stop"]["status"] == 200 and out["stop"]["body"]["cancelled"] == [first["id"]]
    assert first["types"][-1] == "abort" and first["errors"] == []
    assert run_status(log, first["id"]) == "cancelled"
    assert first["text"] == run_text(log, first["id"])
