"""The hyperparameter intervention as a job: an Optuna study whose trials are runs.

Tiny budgets (3-4 trials of a few epochs on digits) keep these fast; the 20-trial, 60-second
goal is measured by ``python -m bench learning_curves``.
"""

from __future__ import annotations

import pytest

from mlexec_app import job_runner, jobs, services
from mlexec_app.models import DiagnosticJob, Intervention, Run, RunStatus

# Its subject does not touch the engines: the first test pass runs it, the second does not.
pytestmark = pytest.mark.engine_independent

pytest.importorskip("torch")
pytest.importorskip("optuna")
pytest.importorskip("django_tasks")

FAST_MODEL = {"model": {"kind": "mlp", "hidden": [32]}, "train": {"min_steps": 10}}


@pytest.fixture
def biased(sized_project):
    """A project whose plan starts with a hyperparameter step (avoidable bias)."""
    services.record_run(
        sized_project, name="first model",
        metrics={"train": 0.12, "train_dev": 0.125, "dev": 0.13, "test": 0.13},
    )  # fmt: skip
    return sized_project


def small_search(project, trials=3):
    """A search job on digits, queued like start_search makes it."""
    job = jobs.create_job(
        project, "digits", diagnostics=["search"], trusted=True,
        params={**FAST_MODEL, "search": {"trials": trials, "timeout": 120}},
    )  # fmt: skip
    return job


def test_one_call_starts_the_search_that_the_plan_asks_for(api, biased, settings):
    settings.MLEXEC_APP = {"DEVICE": "cpu"}
    assert services.plan_project(biased).next.kind.value == "hyperparameters"
    body = api.post(
        f"/projects/{biased.slug}/search-jobs",
        {"dataset": "digits", "trials": 3, "time_budget": 120},
    )
    assert body.status_code == 201, body.content
    job = DiagnosticJob.objects.get(pk=body.json()["id"])
    assert job.status == RunStatus.FINISHED, job.error
    search = job.result["search"]
    trial_runs = Run.objects.filter(project=biased, source="search", name__contains="trial ")
    assert trial_runs.count() == len(search["trials"]) + 1  # every trial, and the best again
    assert all("lr" in r.params and "state" in r.params for r in trial_runs if "best" not in r.name)
    best = job.run
    assert best.dev == search["baseline"]["errors"]["dev"] and best.params["device"] == "cpu"
    # The intervention was adopted, finished, and its realised gain recorded: 0.13 - new dev.
    step = Intervention.objects.get(project=biased, rule_id=search_rule(job))
    assert step.status == "done"
    assert step.realized_gain == pytest.approx(0.13 - best.dev, abs=1e-6)
    # The project is diagnosed again from the best run.
    assert services.diagnose_project(biased).run == best


def search_rule(job):
    return Intervention.objects.get(pk=job.params["search"]["intervention"]).rule_id


def test_the_search_is_refused_when_the_plan_does_not_ask_for_it(api, sized_project):
    services.record_run(
        sized_project, name="fine", metrics={"train": 0.01, "train_dev": 0.011, "dev": 0.012}
    )
    body = api.post(f"/projects/{sized_project.slug}/search-jobs", {"dataset": "digits"})
    assert body.status_code == 409 and body.json()["code"] == "not_in_plan"
    assert not DiagnosticJob.objects.exists()


def two_trials_recorded(job: DiagnosticJob) -> bool:
    """A CANCEL_CHECKER: stop the search once two of its trials are recorded."""
    return len(DiagnosticJob.objects.get(pk=job.pk).result.get("trials", [])) >= 2


def test_a_cancelled_search_resumes_from_the_trials_it_finished(api, biased, settings):
    job = small_search(biased, trials=6)
    kept = getattr(settings, "MLEXEC_APP", {})
    settings.MLEXEC_APP = {**kept, "CANCEL_CHECKER": f"{__name__}.two_trials_recorded"}
    job_runner.execute(job.pk)
    settings.MLEXEC_APP = kept  # the resumed search runs to its end
    job.refresh_from_db()
    assert job.status == RunStatus.CANCELLED
    done = job.result["trials"]
    assert len(done) >= 2
    body = api.post(f"/diagnostic-jobs/{job.pk}/resume")
    assert body.status_code == 201, body.content
    resumed = DiagnosticJob.objects.get(pk=body.json()["id"])
    assert resumed.status == RunStatus.FINISHED, resumed.error
    # The study went on from the earlier trials: only the rest of the budget ran.
    assert len(done) < 6, "the cancel came too late to test a resume"
    assert resumed.result["search"]["options"]["done"] == len(done)
    assert len(resumed.result["search"]["trials"]) == 6
    assert resumed.result["search"]["trials"][: len(done)] == done
    new_runs = Run.objects.filter(name__startswith=f"Search job {resumed.pk}, trial")
    assert new_runs.count() == 6 - len(done)
    again = api.post(f"/diagnostic-jobs/{resumed.pk}/resume")
    assert again.status_code == 409


@pytest.mark.parametrize(
    "search",
    [{"trials": 0}, {"trials": "many"}, {"timeout": -1}, {"params": ["colour"]}, {"resume": "x"},
     {"surprise": 1}],
)  # fmt: skip
def test_bad_search_options_are_refused_before_anything_is_queued(api, biased, search):
    body = api.post(
        f"/projects/{biased.slug}/diagnostic-jobs",
        {"dataset": "digits", "diagnostics": ["search"], "params": {"search": search}},
    )
    assert body.status_code == 422 and body.json()["code"] == "invalid_params"
    assert not DiagnosticJob.objects.exists()


def test_a_search_job_names_only_registered_datasets(api, biased):
    body = api.post(f"/projects/{biased.slug}/search-jobs", {"dataset": "/etc/passwd", "trials": 3})
    assert body.status_code == 422 and body.json()["code"] == "dataset_not_allowed"
    assert not DiagnosticJob.objects.exists()
