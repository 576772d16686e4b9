"""Usage on the log: a run reports what it cost; the fold sums the reports and the REST
snapshot, the runs list's row and the admin show it; bad reports are refused."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from sessions_app import log, services
from sessions_app.domain.errors import BadEvent, RunEnded
from sessions_app.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def usage(run="r1", **value):
    return {"type": "CUSTOM", "run": run, "data": {"name": "sessions.USAGE", "value": value}}


def append(session, events):
    return log.append_sync(services.request(session.pk, events))


def test_reports_add_up_in_the_snapshot_and_on_the_run_row(session, alice):
    append(session, [{"type": "RUN_STARTED", "run": "r1", "agent": "helper"},
                     usage(model="m-1", input_tokens=100, output_tokens=20, cost=0.5,
                           currency="USD", first_token_ms=300, latency_ms=900)])  # fmt: skip
    append(session, [usage(model="m-2", input_tokens=50, output_tokens=5, cost=0.25,
                           latency_ms=400)])  # fmt: skip
    client = Client()
    client.force_login(alice)
    state = client.get("/api/sessions/chat-1/snapshot").json()["state"]
    (run,) = state["runs"]
    expected = {
        "reports": 2,
        "model": "m-2",
        "input_tokens": 150,
        "output_tokens": 25,
        "cost": 0.75,
        "currency": "USD",
        "first_token_ms": 300,
        "latency_ms": 1300,
    }
    assert run["usage"] == expected  # fmt: skip
    assert Run.objects.get(run_id="r1").usage == expected


@pytest.mark.parametrize(
    "bad",
    [
        usage(cost=-1),
        usage(input_tokens=1.5),
        usage(model="x" * 201),
        usage(latency_ms=True),
        usage(price=3),
        usage(run=None, cost=1),
    ],
)
def test_bad_reports_are_refused(session, bad):
    append(session, [{"type": "RUN_STARTED", "run": "r1"}])
    if bad.get("run") is None:
        bad.pop("run")
    with pytest.raises(BadEvent):
        append(session, [bad])
    assert Run.objects.get(run_id="r1").usage is None


def test_an_ended_run_takes_no_more_usage(session):
    append(session, [{"type": "RUN_STARTED", "run": "r1"}, {"type": "RUN_FINISHED", "run": "r1"}])
    with pytest.raises(RunEnded):
        append(session, [usage(cost=1)])


def test_the_admin_lists_runs_with_their_cost_sortable(session, admin_client):
    append(session, [{"type": "RUN_STARTED", "run": "cheap"}, usage("cheap", cost=0.01),
                     {"type": "RUN_STARTED", "run": "dear"}, usage("dear", cost=2.5)])  # fmt: skip
    page = admin_client.get("/admin/sessions_app/run/?o=-9")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.index("dear") < html.index("cheap")
    assert "2.5" in html


def test_the_rest_runs_list_shows_usage(session, alice):
    append(session, [{"type": "RUN_STARTED", "run": "r1"}, usage(output_tokens=7)])
    client = Client()
    client.force_login(alice)
    (run,) = client.get("/api/sessions/chat-1/runs").json()["items"]
    assert run["usage"] == {"reports": 1, "output_tokens": 7}
    json.dumps(run)
