"""Every list of the mlexec REST API comes in bounded pages.

A caller may create any number of assessments, error analyses, interventions, jobs and keys;
a list that answered with all of them held a worker (and its memory) for as long as it took.
"""

from __future__ import annotations

import pytest

from mlexec_app.models import (
    ApiKey,
    DataAssessment,
    DiagnosticJob,
    ErrorAnalysis,
    Intervention,
    RunStatus,
)

pytestmark = pytest.mark.django_db

PAGE = 100  # the default limit
ROWS = PAGE + 3


def _assessments(project, user):
    DataAssessment.objects.bulk_create(
        DataAssessment(project=project, dev_size=i + 1) for i in range(ROWS)
    )


def _error_analyses(project, user):
    ErrorAnalysis.objects.bulk_create(
        ErrorAnalysis(project=project, sample_size=i + 1, categories={"x": 1}) for i in range(ROWS)
    )


def _interventions(project, user):
    Intervention.objects.bulk_create(
        Intervention(project=project, kind="data_quality", priority=0, rule_id="r", title=f"{i}")
        for i in range(ROWS)
    )


def _jobs(project, user):
    # Finished jobs: listing fails stale running ones first, and these must not change.
    DiagnosticJob.objects.bulk_create(
        DiagnosticJob(project=project, dataset="digits", status=RunStatus.FINISHED)
        for _ in range(ROWS)
    )


def _keys(project, user):
    ApiKey.objects.bulk_create(
        ApiKey(owner=user, name=f"k{i}", prefix=f"p{i}", hashed_key="x") for i in range(ROWS)
    )


LISTS = {
    "/projects/{slug}/assessments": _assessments,
    "/projects/{slug}/error-analyses": _error_analyses,
    "/projects/{slug}/interventions": _interventions,
    "/projects/{slug}/diagnostic-jobs": _jobs,
    "/api-keys": _keys,
}


@pytest.mark.parametrize("path", LISTS)
def test_a_long_list_comes_in_pages_that_add_up_to_all_of_it(api, project, user, path):
    LISTS[path](project, user)
    url = path.format(slug=project.slug)
    first = api.get(url).json()
    assert (len(first["items"]), first["count"], first["next_offset"]) == (PAGE, ROWS, PAGE)
    rest = api.get(f"{url}?offset={first['next_offset']}").json()
    assert (len(rest["items"]), rest["next_offset"]) == (ROWS - PAGE, None)
    ids = [item["id"] for item in first["items"] + rest["items"]]
    assert len(set(ids)) == ROWS  # no row twice, none left out
    small = api.get(f"{url}?limit=2&offset=1").json()
    assert [item["id"] for item in small["items"]] == ids[1:3] and small["next_offset"] == 3


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "offset=-1", "offset=1000000001"])
def test_a_page_out_of_bounds_is_refused_with_a_code(api, project, path, query):
    answer = api.get(f"{path.format(slug=project.slug)}?{query}")
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_input")


def test_the_last_page_of_a_short_list_says_there_is_no_next(api, project):
    listed = api.get(f"/projects/{project.slug}/runs").json()
    assert (listed["items"], listed["count"], listed["next_offset"]) == ([], 0, None)


# A page holds up to 1,000 rows, and Django's body limit alone let one row's text or map hold
# 2.5 MB: a page of them took gigabytes of one worker's memory.
TOO_LONG = [
    ("post", "/projects", {"name": "p2", "problem_statement": "x" * 10_001}),
    ("patch", "/projects/{slug}", {"problem_statement": "x" * 10_001}),
    ("post", "/projects/{slug}/assessments", {"notes": "x" * 10_001}),
    ("post", "/projects/{slug}/assessments", {"class_balance": {str(i): 1 for i in range(501)}}),
    ("post", "/projects/{slug}/error-analyses", {"sample_size": 1, "notes": "x" * 10_001,
                                                 "categories": {"a": 1}}),
    ("post", "/projects/{slug}/error-analyses", {"sample_size": 1,
                                                 "categories": {str(i): 0 for i in range(501)}}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body"), TOO_LONG)
def test_text_and_maps_past_their_bounds_are_refused_and_write_nothing(
    api, project, method, path, body
):
    before = project.problem_statement
    answer = getattr(api, method)(path.format(slug=project.slug), body)
    assert (answer.status_code, answer.json()["code"]) == (422, "too_long")
    assert (DataAssessment.objects.count(), ErrorAnalysis.objects.count()) == (0, 0)
    project.refresh_from_db()
    assert project.problem_statement == before and project.owner.mlexec_projects.count() == 1


def test_text_and_maps_at_their_bounds_are_taken(api, project):
    body = {"notes": "é" * 10_000, "class_balance": {str(i): 1 for i in range(500)}}
    assert api.post(f"/projects/{project.slug}/assessments", body).status_code == 201
