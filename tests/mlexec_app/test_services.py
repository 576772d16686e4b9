"""The service functions other code (the diagnostics jobs, scripts) calls directly."""

from __future__ import annotations

import pytest
from django.test import Client

from mlexec_app import services
from mlexec_app.exceptions import InvalidInput, InvalidTransition
from mlexec_app.models import ErrorAnalysis, MetricPoint, Project, Run

pytestmark = pytest.mark.django_db


def test_record_run_stores_splits_params_history_and_final_status(project):
    run = services.record_run(
        project,
        name="mlp",
        params={"hidden": [64]},
        status="finished",
        source="diagnostics",
        metrics={"train": 0.02, "dev": 0.05, "auc": 0.97},
        history=[{"key": "dev", "value": 0.2, "step": 0}, {"key": "dev", "value": 0.07, "step": 9}],
    )
    run.refresh_from_db()
    assert (run.train, run.dev, run.metrics["auc"]) == (0.02, 0.05, 0.97)
    assert run.dev == 0.05  # the final value given wins over the history's last point
    assert run.finished_at is not None and run.source == "diagnostics"
    assert list(services.metric_history(run, "dev").values_list("value", flat=True)) == [0.2, 0.07]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"metrics": {"dev": -0.1}}, "out_of_range"),
        ({"metrics": {"loss": float("nan")}}, "invalid_number"),
        ({"status": "exploded"}, "invalid_choice"),
        ({"cost": -3.0}, "invalid_number"),
        ({"history": [{"key": "dev", "value": 0.1, "step": "one"}]}, "invalid_number"),
    ],
)
def test_record_run_refuses_bad_values_and_writes_nothing(project, kwargs, code):
    with pytest.raises(InvalidInput) as caught:
        services.record_run(project, name="bad", **kwargs)
    assert caught.value.code == code
    assert Run.objects.count() == 0 and MetricPoint.objects.count() == 0


def test_record_error_analysis_feeds_the_ceilings(sized_project):
    services.record_run(sized_project, name="r", metrics={"train": 0.05, "dev": 0.10})
    services.record_error_analysis(sized_project, {"glare": 30, "dog": 5}, 50, source="diagnostics")
    categories = services.diagnose_project(sized_project).categories
    assert [(c.category, round(c.ceiling, 6)) for c in categories] == [
        ("glare", 0.06),
        ("dog", 0.01),
    ]


def test_record_error_analysis_refuses_impossible_counts(project):
    with pytest.raises(InvalidInput, match="between 0 and the sample size"):
        services.record_error_analysis(project, {"glare": 60}, 50)
    with pytest.raises(InvalidInput, match="integers"):
        services.record_error_analysis(project, {"glare": 2.5}, 50)
    assert ErrorAnalysis.objects.count() == 0


def test_record_error_analysis_refuses_a_run_of_another_project(project, user):
    other = services.create_project(user, name="Other")
    run = services.record_run(other, name="r")
    with pytest.raises(InvalidInput) as caught:
        services.record_error_analysis(project, {"a": 1}, 10, run=run)
    assert caught.value.code == "run_mismatch"


def test_accuracy_runs_are_diagnosed_as_errors(user):
    project = services.create_project(user, name="Acc", metric_direction="higher", human_level=0.99)
    services.record_run(project, name="r", metrics={"train": 0.92, "train_dev": 0.915, "dev": 0.83})
    m = services.diagnose_project(project).diagnosis.measurements
    assert (m.human, m.train, m.train_dev, m.dev) == pytest.approx((0.01, 0.08, 0.085, 0.17))


def test_run_lifecycle(project):
    run = services.record_run(project, name="r", status="queued")
    services.set_run_status(run, "running")
    services.set_run_status(run, "cancelling")
    services.set_run_status(run, "cancelled")
    with pytest.raises(InvalidTransition):
        services.set_run_status(run, "running")
    assert Run.objects.get().status == "cancelled"


def test_session_posts_need_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/api/mlexec/projects", {"name": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert Project.objects.count() == 0


def test_too_long_names_are_refused_on_every_database(project):
    # SQLite ignores max_length; PostgreSQL would raise a DataError mid-import.
    with pytest.raises(InvalidInput) as caught:
        services.record_run(project, name="x" * 201)
    assert caught.value.code == "invalid_field" and "name" in caught.value.detail
    with pytest.raises(InvalidInput):
        services.record_error_analysis(project, {"a": 1}, 2, source="s" * 51)
    assert Run.objects.count() == 0 and ErrorAnalysis.objects.count() == 0
