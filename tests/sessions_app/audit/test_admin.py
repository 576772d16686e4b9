"""Saved delivery audits: ``sessions audit --save`` stores a run; the admin shows its gap map
with the previous run's verdicts beside, escaped."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from sessions_app.audit.store import save
from sessions_app.domain.audit import Observations, Stream, report
from sessions_app.models import Audit
from tests.sessions_app.audit import servers as fixtures

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9/chat?<b>x</b>"


def answer(**extra) -> Stream:
    fields = {
        "status": 200, "content_type": "text/event-stream", "streaming": True, "events": 9,
        "text": "<script>alert(1)</script> an answer", "answers": 1, "ended": True,
        "duration_s": 1.0,
    }  # fmt: skip
    return Stream(**{**fields, **extra})


def test_the_admin_shows_each_verdict_beside_the_previous_runs(admin_client):
    before = save(report(Observations(URL, "sse", answer())))
    after_obs = Observations(
        URL, "sse", answer(progress=("tool_calls",)), resume_offered=True,
        cut=answer(ended=False, cut=True), resume=answer(),
    )  # fmt: skip
    after = save(report(after_obs))
    assert after.previous() == before and before.previous() is None
    assert after.summary == "delivery=green continuity=red control=red visibility=green"
    page = admin_client.get(f"/admin/sessions_app/audit/{after.pk}/change/").content.decode()
    assert f"previous: {before.created_at:%Y-%m-%d %H:%M} (#{before.pk})" in page
    assert page.count("changed") >= 2  # delivery and visibility moved
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<script>alert(1)" not in page
    listing = admin_client.get("/admin/sessions_app/audit/").content.decode()
    assert "visibility=green" in listing and "visibility=red" in listing
    assert admin_client.get("/admin/sessions_app/audit/add/").status_code == 403


@pytest.mark.timeout(60)
def test_the_command_saves_a_run_and_writes_json_and_html(tmp_path, capsys):
    with fixtures.serve(fixtures.plain_sse()) as base:
        call_command(
            "sessions", "audit", base + "/chat", "--save", "--timeout", "20",
            "--json", str(tmp_path / "a.json"), "--html", str(tmp_path / "a.html"),
        )  # fmt: skip
    saved = Audit.objects.get()
    assert saved.summary == "delivery=red continuity=red control=red visibility=red"
    assert saved.report["gap_map"]["delivery"] == "red"
    out = capsys.readouterr().out
    assert f"saved as audit #{saved.pk}" in out and "Gap map" in out
    assert (tmp_path / "a.html").read_text().startswith("<!doctype html>")
    assert '"format": "sessions-audit/1"' in (tmp_path / "a.json").read_text()
