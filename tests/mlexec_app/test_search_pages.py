"""The start-a-search button of the project page and the admin: a CSRF form, the API's service.

Each started search is tiny (2 trials of a 16-unit MLP) so these stay fast.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mlexec_app import jobs, services
from mlexec_app.models import DiagnosticJob, RunStatus

pytest.importorskip("torch")
pytest.importorskip("optuna")
pytest.importorskip("django_tasks")

TINY = {"trials": "2", "time_budget": "60"}


@pytest.fixture
def biased(sized_project, settings):
    """A project whose plan starts with a hyperparameter step, and an earlier job on digits."""
    settings.MLEXEC_APP = {"DEVICE": "cpu"}
    services.record_run(
        sized_project, name="first model",
        metrics={"train": 0.12, "train_dev": 0.125, "dev": 0.13, "test": 0.13},
    )  # fmt: skip
    jobs.create_job(
        sized_project, "digits", diagnostics=["baseline"], trusted=False,
        params={"model": {"kind": "mlp", "hidden": [16]}},
    )  # fmt: skip
    return sized_project


def _searches(project):
    return DiagnosticJob.objects.filter(project=project, diagnostics=["search"])


def test_the_project_page_starts_the_search_the_plan_asks_for(user, biased):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page_url = f"/mlexec/projects/{biased.slug}/"
    page = client.get(page_url).content.decode()
    assert "Start a hyperparameter search" in page
    url = f"/mlexec/projects/{biased.slug}/search/"
    assert f'action="{url}"' in page

    assert client.post(url, TINY).status_code == 403  # no CSRF token: nothing started
    assert not _searches(biased).exists()
    token = client.cookies["csrftoken"].value
    answer = client.post(url, {**TINY, "csrfmiddlewaretoken": token})
    assert answer.status_code == 303 and answer["Location"] == page_url
    job = _searches(biased).get()
    assert job.status == RunStatus.FINISHED, job.error
    assert job.params["search"]["trials"] == 2 and len(job.result["search"]["trials"]) == 2
    assert f"Search job #{job.pk} started" in client.get(page_url).content.decode()


def test_the_page_shows_why_a_search_was_refused(user, sized_project):
    services.record_run(
        sized_project, name="fine", metrics={"train": 0.01, "train_dev": 0.011, "dev": 0.012}
    )
    client = Client()
    client.force_login(user)
    page_url = f"/mlexec/projects/{sized_project.slug}/"
    assert "Start a hyperparameter search" not in client.get(page_url).content.decode()
    answer = client.post(f"/mlexec/projects/{sized_project.slug}/search/", TINY, follow=True)
    text = answer.content.decode()
    assert "The search was not started (not_in_plan)" in text and "not a hyperparameter" in text
    assert not DiagnosticJob.objects.exists()
    bad = client.post(
        f"/mlexec/projects/{sized_project.slug}/search/", {"trials": "0"}, follow=True
    )
    assert "The search was not started: trials" in bad.content.decode()


def test_someone_elses_project_is_a_404_and_nothing_starts(other_user, biased):
    client = Client()
    client.force_login(other_user)
    assert client.post(f"/mlexec/projects/{biased.slug}/search/", TINY).status_code == 404
    assert client.get(f"/mlexec/projects/{biased.slug}/search/").status_code in (404, 405)
    assert not _searches(biased).exists()


def test_the_admin_project_page_starts_a_search_and_shows_a_refusal(biased):
    get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client(enforce_csrf_checks=True)
    client.login(username="root", password="pw")
    change = f"/admin/mlexec_app/project/{biased.pk}/change/"
    page = client.get(change).content.decode()
    url = f"/admin/mlexec_app/project/{biased.pk}/start-search/"
    assert "Start a hyperparameter search" in page and f'action="{url}"' in page
    assert client.post(url, TINY).status_code == 403  # CSRF
    token = client.cookies["csrftoken"].value
    answer = client.post(url, {**TINY, "csrfmiddlewaretoken": token})
    assert answer.status_code == 303 and answer["Location"] == change
    job = _searches(biased).get()
    assert job.status == RunStatus.FINISHED, job.error
    assert f"Search job #{job.pk} started" in client.get(change).content.decode()
    # Once the plan's next step is no longer a hyperparameter one, a press shows why not.
    services.record_run(
        biased, name="fine", metrics={"train": 0.01, "train_dev": 0.011, "dev": 0.012}
    )
    again = client.post(url, {**TINY, "csrfmiddlewaretoken": token}, follow=True).content.decode()
    assert "The search was not started (not_in_plan)" in again
    assert _searches(biased).count() == 1
