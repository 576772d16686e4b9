"""REST API: runs logged like an experiment tracker, metric history, error analyses."""

from __future__ import annotations

import pytest

from mlexec_app import services
from mlexec_app.api import HISTORY_PAGE as HISTORY
from mlexec_app.models import ErrorAnalysis, MetricPoint, Run

pytestmark = pytest.mark.django_db


def new_run(api, project, **extra):
    body = {"name": "baseline", "params": {"lr": 0.001}, **extra}
    response = api.post(f"/projects/{project.slug}/runs", body)
    assert response.status_code == 201, response.content
    return response.json()


def test_create_a_run_with_split_metrics_and_history(api, project):
    run = new_run(
        api,
        project,
        status="finished",
        metrics={"train": 0.01, "train_dev": 0.015, "dev": 0.1, "f1": 0.8},
        history=[
            {"key": "loss", "value": 0.9, "step": 0},
            {"key": "loss", "value": 0.4, "step": 1},
        ],
        cost=3.5,
        artifacts=[{"name": "weights", "uri": "s3://bucket/w.pt"}],
    )
    assert (run["train"], run["train_dev"], run["dev"], run["test"]) == (0.01, 0.015, 0.1, None)
    assert run["metrics"] == {"train": 0.01, "train_dev": 0.015, "dev": 0.1, "f1": 0.8, "loss": 0.4}
    assert run["finished_at"] is not None
    assert run["artifacts"] == [{"name": "weights", "uri": "s3://bucket/w.pt"}]


def test_log_batches_then_read_the_history_in_step_order(api, project):
    run = new_run(api, project)
    first = api.post(
        f"/runs/{run['id']}/log-batch",
        {
            "params": {"batch_size": 64},
            "metrics": [
                {"key": "dev", "value": 0.30, "step": 2},
                {"key": "dev", "value": 0.40, "step": 1},
            ],
        },
    )
    assert first.status_code == 200
    api.post(f"/runs/{run['id']}/log-batch", {"metrics": [{"key": "dev", "value": 0.2, "step": 3}]})
    history = api.get(f"/runs/{run['id']}/metrics/dev").json()
    assert [(p["step"], p["value"]) for p in history["points"]] == [(1, 0.4), (2, 0.3), (3, 0.2)]
    latest = api.get(f"/runs/{run['id']}").json()
    assert latest["dev"] == 0.2
    assert latest["params"] == {"lr": 0.001, "batch_size": 64}


def test_a_long_history_comes_in_bounded_pages(api, project):
    """A run takes any number of points; its whole history in one answer held a worker for
    4-5 s and 160 MB at 100,000 points (and scaled on)."""
    run = services.record_run(project, name="long", metrics={"train": 0.1})
    points = [MetricPoint(run=run, key="loss", step=i, value=0.5) for i in range(HISTORY + 5)]
    MetricPoint.objects.bulk_create(points, batch_size=2000)
    first = api.get(f"/runs/{run.pk}/metrics/loss").json()
    assert len(first["points"]) == HISTORY and first["next_offset"] == HISTORY
    rest = api.get(f"/runs/{run.pk}/metrics/loss?offset={HISTORY}").json()
    assert [p["step"] for p in rest["points"]] == list(range(HISTORY, HISTORY + 5))
    assert rest["next_offset"] is None
    assert api.get(f"/runs/{run.pk}/metrics/loss?limit={HISTORY + 1}").status_code == 422


def test_a_late_batch_with_an_earlier_step_does_not_replace_the_latest_value(api, project):
    run = new_run(api, project)
    api.post(f"/runs/{run['id']}/log-batch", {"metrics": [{"key": "dev", "value": 0.2, "step": 5}]})
    api.post(f"/runs/{run['id']}/log-batch", {"metrics": [{"key": "dev", "value": 0.9, "step": 1}]})
    assert api.get(f"/runs/{run['id']}").json()["dev"] == 0.2


@pytest.mark.parametrize(
    ("batch", "status", "code"),
    [
        ({"metrics": [{"key": "dev", "value": 1.7, "step": 1}]}, 422, "out_of_range"),
        ({"metrics": [{"key": "loss", "value": "NaN", "step": 1}]}, 422, "invalid_input"),
        ({"metrics": [{"key": "", "value": 1, "step": 1}]}, 422, "invalid_input"),
        ({"metrics": [{"value": 1, "step": 1}]}, 422, "invalid_input"),
        ({"params": {"lr": 0.1}}, 422, "param_conflict"),
    ],
)
def test_a_bad_batch_is_refused_whole(api, project, batch, status, code):
    run = new_run(api, project)
    good = {"key": "loss", "value": 0.5, "step": 0}
    batch = {**batch, "metrics": [good, *batch.get("metrics", [])]}
    response = api.post(f"/runs/{run['id']}/log-batch", batch)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert MetricPoint.objects.count() == 0
    assert Run.objects.get().params == {"lr": 0.001}


def test_oversized_batch_is_refused(api, project, settings):
    settings.MLEXEC_APP = {"MAX_BATCH": 3}
    run = new_run(api, project)
    points = [{"key": "loss", "value": 0.1, "step": i} for i in range(4)]
    response = api.post(f"/runs/{run['id']}/log-batch", {"metrics": points})
    assert response.status_code == 422 and response.json()["code"] == "batch_too_large"
    assert MetricPoint.objects.count() == 0


def test_run_lifecycle_is_enforced(api, project):
    run = new_run(api, project)
    assert api.patch(f"/runs/{run['id']}", {"status": "finished"}).status_code == 200
    back = api.patch(f"/runs/{run['id']}", {"status": "running"})
    assert back.status_code == 409 and back.json()["code"] == "invalid_transition"
    late = api.post(f"/runs/{run['id']}/log-batch", {"metrics": [{"key": "x", "value": 1}]})
    assert late.status_code == 409
    assert Run.objects.get().status == "finished"


def test_runs_of_other_users_are_not_found(api, other_user):
    from mlexec_app import services

    theirs = services.create_project(other_user, name="Theirs")
    run = services.record_run(theirs, name="secret", metrics={"dev": 0.1}, status="running")
    assert api.get(f"/runs/{run.pk}").status_code == 404
    assert api.post(f"/runs/{run.pk}/log-batch", {"params": {"a": 1}}).status_code == 404
    assert api.get(f"/runs/{run.pk}/metrics/dev").status_code == 404
    run.refresh_from_db()
    assert run.params == {}


def test_list_runs_newest_first(api, project):
    new_run(api, project, name="first")
    new_run(api, project, name="second")
    listed = api.get(f"/projects/{project.slug}/runs").json()
    assert [r["name"] for r in listed["items"]] == ["second", "first"]


def test_error_analysis_round_trip(api, project):
    response = api.post(
        f"/projects/{project.slug}/error-analyses",
        {"categories": {"blurry": 43, "dog": 8}, "sample_size": 100},
    )
    assert response.status_code == 201
    listed = api.get(f"/projects/{project.slug}/error-analyses").json()["items"]
    assert listed[0]["categories"] == {"blurry": 43, "dog": 8}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"categories": {"blurry": 143}, "sample_size": 100}, "invalid_error_analysis"),
        ({"categories": {"blurry": -1}, "sample_size": 100}, "invalid_input"),
        ({"categories": {"blurry": 1}, "sample_size": 0}, "invalid_input"),
        ({"categories": {"blurry": 1.5}, "sample_size": 10}, "invalid_input"),
    ],
)
def test_impossible_error_analysis_is_refused(api, project, body, code):
    response = api.post(f"/projects/{project.slug}/error-analyses", body)
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert ErrorAnalysis.objects.count() == 0


def test_errors_keep_their_code_while_debug_is_on(api, project, settings):
    # With DEBUG on, django-ninja answers unhandled exceptions with a 500 traceback.
    settings.DEBUG = True
    response = api.post(f"/projects/{project.slug}/runs", {"name": "x", "metrics": {"dev": 1.7}})
    assert response.status_code == 422
    assert response.json()["code"] == "out_of_range"
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/runs/{run}/log-batch", {"metrics": [{"key": "loss", "value": 1, "step": 2**31}]}),
        ("/projects/{slug}/assessments", {"dev_size": 2**31}),
        ("/projects/{slug}/error-analyses", {"categories": {"a": 1}, "sample_size": 2**31}),
    ],
)
def test_integers_beyond_32_bits_are_refused_not_crashed_on(api, project, path, body):
    # They would overflow PostgreSQL's integer columns: a 500 on the real pass.
    run = new_run(api, project)
    response = api.post(path.format(run=run["id"], slug=project.slug), body)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"
    assert MetricPoint.objects.count() == 0 and ErrorAnalysis.objects.count() == 0


def test_service_refuses_a_step_beyond_32_bits(project):
    from mlexec_app import services
    from mlexec_app.exceptions import InvalidInput

    with pytest.raises(InvalidInput, match="32 bits"):
        services.record_run(project, name="r", history=[{"key": "x", "value": 1, "step": 2**40}])
    assert Run.objects.count() == 0


def test_text_with_nul_characters_is_refused_whole_and_changes_nothing(api, project):
    # PostgreSQL stores no NUL in text or jsonb: found by fuzzing the API on PostgreSQL.
    run = api.post(f"/projects/{project.slug}/runs", {"name": "baseline"}).json()
    refused = api.patch(f"/runs/{run['id']}", {"artifacts": [{"name": "w", "uri": "s3://\x00"}]})
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_text")
    job = api.post(f"/projects/{project.slug}/diagnostic-jobs", {"dataset": "digits\x00"})
    assert (job.status_code, job.json()["code"]) == (422, "invalid_text")
    after = api.get(f"/runs/{run['id']}").json()
    assert after["artifacts"] == []
    listed = api.get(f"/projects/{project.slug}/runs").json()
    assert [r["name"] for r in listed["items"]] == ["baseline"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_params_are_refused_and_change_nothing(api, project, number):
    # Python's json reads NaN; no database's JSON column takes it (a 500 on both engines).
    created = api.post(
        f"/projects/{project.slug}/runs", raw=f'{{"name": "r", "params": {{"lr": [1, {number}]}}}}'
    )
    assert (created.status_code, created.json()["code"]) == (422, "invalid_number")
    assert not Run.objects.exists()
    run = new_run(api, project)
    logged = api.post(f"/runs/{run['id']}/log-batch", raw=f'{{"params": {{"lr": {number}}}}}')
    assert (logged.status_code, logged.json()["code"]) == (422, "invalid_number")
    assert api.get(f"/runs/{run['id']}").json()["params"] == run["params"]
    job = api.post(
        f"/projects/{project.slug}/diagnostic-jobs",
        raw=f'{{"dataset": "digits", "params": {{"target_error": {number}}}}}',
    )
    assert (job.status_code, job.json()["code"]) == (422, "invalid_number")


# --- a run's size -------------------------------------------------------------------------------


def _too_big(answer):
    return (answer.status_code, answer.json()["code"]) == (422, "run_too_large")


def test_a_run_past_max_run_bytes_is_refused_whole_and_batches_cannot_grow_one_past_it(
    api, project
):
    """Every run list carries each run's params, metrics, artifacts and notes: runs of 2.4 MB
    of params each made a page of 100 take a worker 3.4 s and 833 MB (a page may hold 1,000),
    and batches add params and metric keys to a run without end."""
    big = "x" * 70_000
    assert _too_big(api.post(f"/projects/{project.slug}/runs", {"name": "r", "params": {"a": big}}))
    notes = api.post(f"/projects/{project.slug}/runs", {"name": "r", "notes": big})
    assert (notes.status_code, notes.json()["code"]) == (422, "too_long")
    assert not Run.objects.exists()
    run = api.post(f"/projects/{project.slug}/runs", {"name": "r", "status": "running"}).json()
    for i in range(6):  # 60,000 bytes of params: under the limit
        batch = {"params": {f"p{i}": "y" * 10_000}, "metrics": [{"key": "loss", "value": 1.0}]}
        assert api.post(f"/runs/{run['id']}/log-batch", batch).status_code == 200
    over = {"params": {"p6": "y" * 10_000}, "metrics": [{"key": "acc", "value": 0.5, "step": 3}]}
    assert _too_big(api.post(f"/runs/{run['id']}/log-batch", over))
    stored = Run.objects.get(pk=run["id"])
    assert "p6" not in stored.params and not stored.points.filter(key="acc").exists()
    assert _too_big(api.patch(f"/runs/{run['id']}", {"notes": "z" * 10_000}))
    assert Run.objects.get(pk=run["id"]).notes == ""


def test_max_run_bytes_is_a_setting(api, project, settings):
    settings.MLEXEC_APP = {"MAX_RUN_BYTES": 200_000}
    big = {"name": "r", "params": {"a": "x" * 70_000}}
    assert api.post(f"/projects/{project.slug}/runs", big).status_code == 201
