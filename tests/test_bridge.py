"""The demo site's bridge: an mlexec job's progress lands in a durable session, and a stop
pressed in that session cancels the job."""

from __future__ import annotations

import json

import pytest

from config.bridge import publish_job_progress, run_id, session_name
from mlexec_app import jobs, services
from sessions_app import log
from sessions_app.models import Entry, Run, Session

pytest.importorskip("torch")
pytestmark = pytest.mark.django_db(transaction=True)
FAST = {"train": {"epochs": 5, "min_steps": 20}}


@pytest.fixture
def project(django_user_model):
    owner = django_user_model.objects.create_user(username="ml", password="pw")
    return services.create_project(
        owner, name="Digits", problem_statement="Read digits.", data_type="image",
        abstraction_layer="deep_learning", metric_name="error", target_value=0.02, human_level=0.01,
    )  # fmt: skip


def events_of(session):
    return [
        json.loads(bytes(body))
        for body in Entry.objects.filter(session=session)
        .order_by("seq")
        .values_list("body", flat=True)
    ]


def test_a_jobs_progress_becomes_a_run_in_its_own_session(project):
    job = jobs.start_job(project, "digits", diagnostics=["baseline"], params=FAST)
    session = Session.objects.get(name=session_name(job))
    assert session.owner == project.owner
    events = events_of(session)
    assert events[0] == {**events[0], "type": "RUN_STARTED", "run": run_id(job), "agent": "mlexec"}
    progress = [e["data"]["value"] for e in events if e["type"] == "CUSTOM"]
    assert progress[0]["type"] == "started" and progress[-1]["type"] == "finished"
    assert (
        events[-1]["type"] == "RUN_FINISHED"
        and Run.objects.get(run_id=run_id(job)).status == "finished"
    )


def test_a_stop_in_the_session_cancels_the_job(project):
    job = jobs.create_job(project, "digits", diagnostics=["baseline"], params=FAST)
    assert (
        publish_job_progress(job, {"type": "started", "job": job.pk, "project": project.pk})
        is False
    )
    session = Session.objects.get(name=session_name(job))
    log.append_sync(log.AppendRequest(session.pk, [log.Item('{"type":"CANCEL"}', "CANCEL")]))
    asked = publish_job_progress(
        job, {"type": "progress", "job": job.pk, "project": project.pk, "fraction": 0.1}
    )
    assert asked is True
    publish_job_progress(job, {"type": "cancelled", "job": job.pk, "project": project.pk})
    assert Run.objects.get(run_id=run_id(job)).status == "cancelled"


def test_metrics_report_jobs_by_status_and_duration(project, client, settings):
    settings.SESSIONS_APP = {**settings.SESSIONS_APP, "METRICS_ALLOWED_IPS": ["127.0.0.1"]}
    jobs.start_job(project, "digits", diagnostics=["baseline"], params=FAST)
    body = client.get("/metrics").content.decode()
    assert (
        'mlexec_jobs{status="succeeded"} 1.0' in body
        or 'mlexec_jobs{status="finished"} 1.0' in body
    )
    assert "mlexec_job_seconds_count" in body


def test_a_user_cannot_take_a_jobs_session_name_first(project, django_user_model):
    from django.test import Client

    from config.bridge import job_session

    job = jobs.create_job(project, "digits", diagnostics=["baseline"], params=FAST)
    mallory = django_user_model.objects.create_user(username="mallory", password="pw")
    thief = Client()
    thief.force_login(mallory)
    taken = thief.post(
        "/api/sessions/", {"name": session_name(job)}, content_type="application/json"
    )
    assert (taken.status_code, taken.json()["code"]) == (409, "conflict")
    assert not Session.objects.filter(name=session_name(job)).exists()

    publish_job_progress(job, {"type": "started", "job": job.pk, "project": project.pk})
    owner = Client()
    owner.force_login(project.owner)
    mine = owner.get(f"/api/sessions/{session_name(job)}/events").json()["events"]
    assert [e["type"] for e in mine] == ["RUN_STARTED", "CUSTOM"]
    assert thief.get(f"/api/sessions/{session_name(job)}").status_code == 404
    assert job_session(job).owner == project.owner


def test_the_bridge_never_publishes_into_a_session_it_did_not_make(project, django_user_model):
    from config.bridge import ForeignJobSession

    job = jobs.create_job(project, "digits", diagnostics=["baseline"], params=FAST)
    mallory = django_user_model.objects.create_user(username="mallory", password="pw")
    # As if made before the prefix was reserved, or by hand: even with the job's id in it.
    planted = Session.objects.create(
        name=session_name(job), owner=mallory, metadata={"mlexec_job": job.pk}
    )
    with pytest.raises(ForeignJobSession):
        publish_job_progress(job, {"type": "started", "job": job.pk, "project": project.pk})
    assert events_of(planted) == []
    # The job's owner's copy of the marker does not pass for the bridge's either.
    planted.owner = project.owner
    planted.save()
    with pytest.raises(ForeignJobSession):
        publish_job_progress(job, {"type": "started", "job": job.pk, "project": project.pk})
    assert events_of(planted) == []
