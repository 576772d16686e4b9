"""The delivery audit against small real chat servers: each fixture's gap map, and bad input.

Each fixture is a real server on loopback (uvicorn; pydantic-ai's own AG-UI server with its
offline FunctionModel), audited through the audit's own TCP proxy. See
tests/e2e/test_audit.py for the AI SDK (the `ai` npm package) and this project's own doors.
"""

from __future__ import annotations

import json

import pytest

from sessions_app.audit import run_audit
from sessions_app.audit.report import to_dict, to_html, to_text
from tests.sessions_app.audit import servers as fixtures

pytestmark = [pytest.mark.engine_independent, pytest.mark.timeout(60)]


def findings(report, capability: str) -> list[str]:
    found = next(c for c in report.capabilities if c.name == capability)
    return [f"{f.verdict.value}: {f.summary}" for f in found.findings]


@pytest.fixture(scope="module")
def plain_base():
    with fixtures.serve(fixtures.plain_sse()) as base:
        yield base


@pytest.fixture(scope="module")
def plain(plain_base):
    return run_audit(plain_base + "/chat", "sse", timeout=20)


@pytest.fixture(scope="module")
def with_ids():
    app = fixtures.sse_with_ids()
    with fixtures.serve(app) as base:
        yield run_audit(base + "/chat", "sse", timeout=20), app.state.store


@pytest.fixture(scope="module")
def agui():
    pytest.importorskip("pydantic_ai")
    with fixtures.serve(fixtures.agui_app()) as base:
        yield run_audit(base + "/agent", "agui", timeout=20)


def test_a_plain_sse_chat_without_ids_is_red_everywhere(plain):
    assert plain.problem == ""
    assert plain.gap_map() == {
        "delivery": "red", "continuity": "red", "control": "red", "visibility": "red",
    }  # fmt: skip
    assert findings(plain, "delivery")[0].startswith(
        "red: cannot resume: the stream carries no event ids"
    )
    assert plain.figures.answer_chars == len("".join(fixtures.tokens()))
    assert plain.figures.events == len(fixtures.tokens()) + 1  # the tokens and [DONE]


def test_sse_with_ids_resumes_but_the_cut_killed_the_generation(with_ids):
    report, store = with_ids
    delivery = findings(report, "delivery")
    assert delivery[0].startswith("red: resumes, but the answer stays incomplete")
    assert delivery[1].startswith("red: the cut killed the generation on the server")
    assert findings(report, "control") == [
        "red: stop is a disconnect: closing the connection is what ends the generation, so"
        " resume and stop cannot both work (the SSE resume-cancel conflict)"
    ]
    assert store.disconnects >= 1  # the server saw the cut as a disconnect
    resumed = [e for e in report.exchanges if "Last-Event-ID" in e.request]
    assert len(resumed) == 1 and resumed[0].answer.startswith("HTTP 200")


def test_pydantic_ai_ag_ui_shows_tool_calls_but_has_no_way_back_no_second_device_no_stop(agui):
    assert agui.gap_map() == {
        "delivery": "red", "continuity": "red", "control": "red", "visibility": "green",
    }  # fmt: skip
    assert "TOOL_CALL_START" in findings(agui, "visibility")[0]
    assert "cannot resume (HTTP 404)" in findings(agui, "delivery")[0]
    assert findings(agui, "control")[0].startswith("red: no explicit stop")
    plan = [step.title for step in agui.plan]
    assert "Keep your agent server; put the gateway in front of it" in plan
    gateway = next(s for s in agui.plan if s.title.startswith("Keep your agent"))
    assert '"protocol": "agui"' in gateway.snippet and "run_agents" in gateway.snippet


def test_an_openai_compatible_stream_has_no_way_back_no_second_device_and_no_stop():
    with fixtures.serve(fixtures.openai_chat()) as base:
        report = run_audit(base + "/v1/chat/completions", "openai", timeout=20)
    assert report.gap_map() == {
        "delivery": "red", "continuity": "red", "control": "red", "visibility": "amber",
    }  # fmt: skip
    assert findings(report, "delivery")[0] == (
        "red: cannot resume: OpenAI-compatible streams have no resume; the rest is lost"
    )
    assert report.figures.answer_chars == len("".join(fixtures.tokens()))
    gateway = next(s for s in report.plan if "gateway" in s.title)
    assert '"protocol": "openai"' in gateway.snippet


def test_over_tls_the_proxy_keeps_the_host_name_and_cuts_at_40_percent_of_the_events(tmp_path):
    pytest.importorskip("cryptography")
    import ssl

    cert, key = fixtures.self_signed(tmp_path)
    trusted = ssl.create_default_context(cafile=str(cert))
    with fixtures.serve(fixtures.sse_with_ids(), tls=(cert, key)) as base:
        report = run_audit(base + "/chat", "sse", timeout=20, verify=trusted)
    assert report.problem == "" and report.gap_map()["delivery"] == "red"
    cut = next(e for e in report.exchanges if "cut by the audit" in e.answer)
    first = len(fixtures.tokens()) + 1  # the tokens and [DONE]
    seen = int(cut.answer.split("; ")[2].split(" events")[0])
    assert -(-first * 2 // 5) <= seen <= -(-first * 2 // 5) + 2  # ~40% of the first's events


def test_the_json_report_is_the_documented_shape(plain):
    data = json.loads(json.dumps(to_dict(plain)))
    assert data["format"] == "sessions-audit/1" and data["green"] is False
    assert [c["name"] for c in data["capabilities"]] == list(data["gap_map"])
    assert set(data["figures"]) >= {"time_to_first_token_s", "tokens_per_second", "events"}
    assert {"request", "answer", "excerpt", "probe"} == set(data["evidence"][0])
    delivery = data["capabilities"][0]
    assert [e["probe"] for e in delivery["evidence"]] == ["cut"]  # no way back without ids
    assert data["plan"][0]["title"] == "Install and mount sessions_app"


@pytest.mark.parametrize(
    ("path", "protocol", "problem"),
    [
        ("/json", "sse", "not a stream (Content-Type application/json)"),
        ("/guarded", "sse", "HTTP 401: the endpoint refused the credentials (pass --header)"),
        ("/chat", "carrier-pigeon", "unknown protocol 'carrier-pigeon'"),
    ],
)
def test_bad_input_is_a_clear_finding_not_a_traceback(path, protocol, problem):
    with fixtures.serve(fixtures.misfits()) as base:
        report = run_audit(base + path, protocol, timeout=10)
    assert report.problem.startswith(problem)
    assert set(report.gap_map().values()) == {"unknown"}
    assert problem[:20] in to_text(report)


def test_an_oversized_event_and_an_endless_stream_stay_within_the_bounds():
    with fixtures.serve(fixtures.misfits()) as base:
        huge = run_audit(base + "/huge", "sse", timeout=10)
        endless = run_audit(base + "/endless", "sse", timeout=2)
    assert huge.problem == "an event of more than 1048576 bytes"
    assert "no end within 2 s (the audit's bound)" in endless.exchanges[0].answer
    assert endless.figures is not None and endless.figures.answer_chars > 0


def test_credentials_never_reach_the_report(plain_base):
    report = run_audit(plain_base + "/chat", "sse", headers={"Authorization": "Bearer s3cret"})
    assert report.figures is not None  # the audit ran, with the header
    assert "s3cret" not in json.dumps(to_dict(report)) + to_html(report) + to_text(report)


def test_an_unreachable_endpoint_is_a_finding():
    from tests.e2e.servers import free_port

    report = run_audit(f"http://127.0.0.1:{free_port()}/chat", "sse", timeout=5)
    assert report.problem.startswith("cannot connect to 127.0.0.1")


def test_the_html_page_escapes_what_the_endpoint_sent_and_loads_nothing():
    with fixtures.serve(fixtures.misfits()) as base:
        report = run_audit(base + "/hostile", "sse", timeout=10)
    page = to_html(report)
    assert report.figures is not None and "<script>" in "".join(e.excerpt for e in report.exchanges)
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;" in page
    assert "http://" not in page.replace(base, "") and "src=" not in page.replace("src=x", "")
    assert "\x1b" not in to_text(report)
