"""The delivery audit's pure half: verdicts from observations, and the protocol readers."""

from __future__ import annotations

import json

import pytest

from sessions_app.audit.readers import READERS, Held, SSEDecoder
from sessions_app.domain.audit import (
    Observations,
    Stop,
    Stream,
    Verdict,
    compare,
    design,
    figures,
    report,
    worst,
)

pytestmark = pytest.mark.engine_independent

FULL = "one two three four five six seven eight nine ten " * 4


def answer(text: str = FULL, **extra) -> Stream:
    fields = {
        "status": 200, "content_type": "text/event-stream", "streaming": True, "events": 40,
        "text": text, "answers": 1, "ended": True, "outcome": "finished", "duration_s": 2.0,
        "first_text_s": 0.5, "first_event_s": 0.4, "event_sizes": (30, 40, 50),
    }  # fmt: skip
    return Stream(**{**fields, **extra})


def observed(**extra) -> Observations:
    return Observations(
        **{"url": "http://x/chat", "protocol": "agui", "baseline": answer(), **extra}
    )


def verdicts(obs: Observations) -> dict[str, str]:
    return report(obs).gap_map()


def test_an_exact_resume_a_live_second_device_and_an_acknowledged_stop_are_all_green():
    obs = observed(
        cut=answer(FULL[:80], ended=False, cut=True), resume=answer(), resume_offered=True,
        watch=answer(), watch_offered=True, fresh=answer(), fresh_offered=True,
        stop=Stop(True, 200, "", answer(FULL[:30], outcome="cancelled"), 0.2),
        baseline=answer(progress=("SUBAGENT_STARTED",)),
    )  # fmt: skip
    result = report(obs)
    assert result.green and result.figures.stop_to_end_s == 0.2


def test_a_replay_from_the_start_appended_by_a_plain_client_is_duplicates():
    cut = answer(FULL[:80], ended=False, cut=True)
    obs = observed(protocol="sse", cut=cut, resume=answer(FULL[:80] + FULL), resume_offered=True)
    delivery = report(obs).capabilities[0]
    assert delivery.verdict is Verdict.AMBER
    assert delivery.findings[0].summary.startswith("restarts from the beginning")


def test_a_way_back_that_ends_short_is_loss_and_shows_the_generation_died():
    cut = answer(FULL[:80], ended=False, cut=True)
    short = answer(FULL[:90], ended=False, outcome="")
    obs = observed(protocol="sse", cut=cut, resume=short, resume_offered=True)
    summaries = [f.summary for f in report(obs).capabilities[0].findings]
    assert summaries[0] == "resumes, but the answer stays incomplete (loss)"
    assert summaries[1].startswith("the cut killed the generation on the server")
    control = report(obs).capabilities[2]
    assert (
        control.verdict is Verdict.RED and "resume-cancel conflict" in control.findings[0].summary
    )


def test_no_answer_blocks_every_capability_with_the_reason():
    result = report(observed(baseline=Stream(status=401)))
    assert result.problem.startswith("HTTP 401") and not result.green
    assert set(result.gap_map().values()) == {"unknown"} and result.plan == ()


def test_a_stop_that_came_too_late_is_not_a_gap():
    from sessions_app.domain.audit import STOP_TOO_LATE

    result = report(observed(stop=Stop(True, None, STOP_TOO_LATE, answer())))
    control = result.capabilities[2]
    assert control.verdict is Verdict.UNKNOWN and control.findings[0].summary.startswith(
        "not probed"
    )


def test_worst_leaves_not_applicable_out():
    assert worst([Verdict.GREEN, Verdict.NA]) is Verdict.GREEN
    assert worst([Verdict.NA]) is Verdict.NA
    assert worst([Verdict.AMBER, Verdict.RED, Verdict.GREEN]) is Verdict.RED


def test_design_follows_the_measured_stream():
    fast = figures(observed(baseline=answer(events=200, event_sizes=(20_000,))))
    topics = {s.topic: s.text for s in design(fast)}
    assert topics["coalescing"].startswith("100 events/s: coalesce")
    assert "raise MAX_EVENT_BYTES to 131072" in topics["limits"]


def test_the_plan_puts_the_gateway_in_front_of_an_agent_server_and_names_the_door():
    steps = report(observed(protocol="openai", cut=None)).plan
    gateway = next(s for s in steps if "gateway" in s.title)
    assert '"protocol": "openai", "url": "http://x/chat"' in gateway.snippet
    assert any("durable-sessions.js" in s.snippet for s in steps)
    sse_steps = report(observed(protocol="sse")).plan
    assert any("sessions_app.agents.adapters.pydantic_ai" in s.text for s in sse_steps)


def test_compare_lists_what_changed():
    before = {"delivery": "red", "continuity": "red", "control": "red", "visibility": "amber"}
    after = {"delivery": "green", "continuity": "red", "control": "red", "visibility": "amber"}
    assert compare(before, after) == [("delivery", "red", "green")]


def frames(protocol: str, lines: list[str], held: Held | None = None) -> Held:
    held = held or Held()
    decoder = SSEDecoder()
    for event in decoder.feed("".join(lines).encode()):
        READERS[protocol](held, event)
    return held


def data(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def test_the_ai_sdk_reader_replaces_a_message_started_again_under_its_id():
    first = [
        data({"type": "start", "messageId": "m1"}),
        data({"type": "text-delta", "delta": "Hel"}),
    ]
    held = frames("aisdk", first)
    again = first + [data({"type": "text-delta", "delta": "lo"}), data({"type": "finish"})]
    held = frames("aisdk", [*again, "data: [DONE]\n\n"], held)
    assert (held.text, held.answers, held.outcome) == ("Hello", 1, "finished")


def test_the_ag_ui_reader_merges_the_snapshot_after_the_audits_own_message():
    held = Held(mine="u2")
    snapshot = {"type": "MESSAGES_SNAPSHOT", "messages": [
        {"id": "u1", "role": "user", "content": "earlier"},
        {"id": "a1", "role": "assistant", "content": "an earlier answer"},
        {"id": "u2", "role": "user", "content": "mine"},
        {"id": "a2", "role": "assistant", "content": "Hel"},
    ]}  # fmt: skip
    frames("agui", [data(snapshot), data({"type": "TEXT_MESSAGE_CONTENT", "messageId": "a2",
           "delta": "lo"}), data({"type": "RUN_FINISHED", "outcome": {"type": "cancelled"}})], held)  # fmt: skip
    assert (held.text, held.outcome) == ("Hello", "cancelled")


def test_the_plain_reader_takes_text_fields_openai_chunks_and_raw_text():
    held = frames("sse", [data({"delta": "a"}), data({"choices": [{"delta": {"content": "b"}}]}),
                          "data: c\n\n", "event: done\ndata: x\n\n"])  # fmt: skip
    assert (held.text, held.ended) == ("abc", True)


def log_event(offset: int, kind: str, run: str = "", message: str = "", **data) -> dict:
    event = {"offset": f"{offset:016d}", "type": kind, "data": data}
    return {**event, **({"run": run} if run else {}), **({"message": message} if message else {})}


def test_the_log_reader_follows_the_run_after_the_audits_message_and_its_sub_runs():
    from sessions_app.audit.readers import read_log

    held = Held(mine="u1")
    events = [
        log_event(1, "RUN_STARTED", "r0"),  # someone else's run, before the audit's message
        log_event(2, "TEXT_MESSAGE_START", message="u1", role="user"),
        log_event(3, "RUN_STARTED", "r1"),
        log_event(4, "TEXT_MESSAGE_CONTENT", "r1", "a1", delta="Hel"),
        log_event(5, "RUN_STARTED", "r2", parentRunId="r1"),
        log_event(6, "TEXT_MESSAGE_CONTENT", "r2", "a2", delta="[sub]"),
        log_event(4, "TEXT_MESSAGE_CONTENT", "r1", "a1", delta="Hel"),  # a duplicate offset
        log_event(7, "TEXT_MESSAGE_CONTENT", "r1", "a1", delta="lo"),
        log_event(8, "RUN_FINISHED", "r1", outcome="cancelled"),
    ]
    for event in events:
        read_log(held, event)
    assert (held.run_id, held.text, held.outcome) == ("r1", "Hello[sub]", "cancelled")
    assert held.progress == ["SUB_AGENT_RUN"]


def test_the_snapshot_reader_takes_the_answer_after_the_audits_message():
    from sessions_app.audit.readers import read_snapshot

    held = Held(mine="u2")
    state = {
        "messages": [
            {"id": "a0", "role": "assistant", "run": "r0", "text": "older"},
            {"id": "u2", "role": "user", "run": None, "text": "mine"},
            {"id": "a1", "role": "assistant", "run": "r1", "text": "Hello"},
            {"id": "a2", "role": "assistant", "run": "r2", "text": " and more"},
        ],
        "runs": [
            {"id": "r0", "status": "finished", "parent": None},
            {"id": "r1", "status": "finished", "parent": None},
            {"id": "r2", "status": "finished", "parent": "r1"},
        ],
    }
    read_snapshot(held, state)
    assert (held.run_id, held.text, held.ended) == ("r1", "Hello and more", True)


def test_an_error_at_the_end_keeps_the_endpoints_own_words_trimmed():
    held = frames("agui", [data({"type": "RUN_ERROR", "code": "agent_lost", "message": "x" * 500})])
    assert (held.outcome, held.why[:10], len(held.why)) == ("error", "agent_lost", 200)
    held = frames("aisdk", [data({"type": "error", "errorText": "quota exceeded"})])
    assert (held.ended, held.why) == (True, "quota exceeded")


def test_the_audit_runs_without_django():
    """run_audit is a plain function: its probes, readers and verdicts load no Django."""
    import subprocess
    import sys

    code = (
        "import sys, sessions_app.audit, sessions_app.audit.report; print('django' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
