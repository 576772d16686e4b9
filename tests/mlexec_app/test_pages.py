"""The admin project page and the /mlexec/ pages render the diagnosis, the plan and charts."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mlexec_app import reports, services
from mlexec_app.models import ApiKey, MetricPoint, Run
from mlexec_app.reports import MAX_CHART_POINTS

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(db):
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client()
    client.force_login(boss)
    return client


@pytest.fixture
def diagnosed(sized_project):
    run = services.record_run(
        sized_project,
        name="resnet",
        metrics={"train": 0.01, "train_dev": 0.015, "dev": 0.10},
        history=[{"key": "dev", "value": 0.2 - 0.02 * i, "step": i} for i in range(6)]
        + [{"key": "loss", "value": 1.0 / (i + 1), "step": i} for i in range(6)],
    )
    services.record_error_analysis(sized_project, {"blurry": 40, "night": 12}, 100)
    return sized_project, run


def svg_count(html: str) -> int:
    return len(re.findall(r'<svg [^>]*class="mlexec-chart"', html))


def test_admin_project_page_shows_diagnosis_plan_and_charts(admin_client, diagnosed):
    project, _ = diagnosed
    page = admin_client.get(f"/admin/mlexec_app/project/{project.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "data_mismatch" in html and "decided" in html
    assert "plan.data_quality.match_distributions" in html
    assert svg_count(html) == 3  # decomposition, categories, metric history
    assert html.count('class="bar"') >= 4  # human level + three gaps (+ categories)
    assert html.count('class="series"') == 2  # dev and loss histories
    assert "Data mismatch: 8.5%" in html  # the bar's tooltip carries its value


def test_admin_project_page_without_runs_says_so(admin_client, project):
    page = admin_client.get(f"/admin/mlexec_app/project/{project.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "No usable run yet" in html
    assert "No metric history yet." in html


def test_admin_compares_runs_side_by_side(admin_client, diagnosed):
    project, first = diagnosed
    second = services.record_run(
        project,
        name="vit",
        params={"lr": 0.0003, "depth": 12},
        metrics={"train": 0.02, "dev": 0.08},
        history=[{"key": "dev", "value": 0.15 - 0.01 * i, "step": i} for i in range(4)],
    )
    page = admin_client.post(
        "/admin/mlexec_app/run/",
        {"action": "compare", "_selected_action": [first.pk, second.pk]},
    )
    html = page.content.decode()
    assert page.status_code == 200
    header = re.search(r"<thead>(.*?)</thead>", html, re.S).group(1)
    assert header.index("resnet") < header.index("vit")
    assert re.search(r"<td>depth</td><td>–</td><td>12</td>", html)
    assert html.count('class="series"') == 2  # both runs' dev curves overlaid


def test_run_admin_page_plots_its_history(admin_client, diagnosed):
    _, run = diagnosed
    page = admin_client.get(f"/admin/mlexec_app/run/{run.pk}/change/")
    assert page.status_code == 200
    assert page.content.decode().count('class="series"') == 2


def _polylines(html: str) -> list[list[str]]:
    return [m.split() for m in re.findall(r'<polyline class="series" points="([^"]*)"', html)]


def test_a_long_history_is_drawn_thinned_from_its_first_step_to_its_last(
    admin_client, sized_project
):
    """A run takes any number of points; each page drew every one of them (400,000 points:
    a 4.6 MB page, all read from the database on every view)."""
    run = services.record_run(
        sized_project, name="long", metrics={"train": 0.01, "train_dev": 0.015, "dev": 0.1}
    )
    points = [MetricPoint(run=run, key="loss", step=i, value=1 / (i + 1)) for i in range(5003)]
    MetricPoint.objects.bulk_create(points)
    owner = Client()
    owner.force_login(sized_project.owner)
    for page in (
        admin_client.get(f"/admin/mlexec_app/run/{run.pk}/change/"),
        owner.get(f"/mlexec/projects/{sized_project.slug}/"),
    ):
        (drawn,) = _polylines(page.content.decode())
        assert 2 < len(drawn) <= MAX_CHART_POINTS + 1
    thinned = reports.chart_points(run, "loss")
    assert thinned[0] == (0, 1.0) and thinned[-1] == (5002, 1 / 5003)
    assert [step for step, _ in thinned] == sorted({step for step, _ in thinned})


def test_admin_creates_an_api_key_and_shows_it_once(admin_client, user):
    page = admin_client.post(
        "/admin/mlexec_app/apikey/add/",
        {"name": "ci", "owner": user.pk, "all_projects": "on"},
        follow=True,
    )
    shown = re.search(r"The new key is (mlx_\S+)", page.content.decode()).group(1)
    key = ApiKey.objects.get()
    assert shown not in key.hashed_key
    from mlexec_app import keys

    assert keys.authenticate(shown) == key
    again = admin_client.get(f"/admin/mlexec_app/apikey/{key.pk}/change/")
    assert shown not in again.content.decode()


def test_landing_lists_my_projects_with_links(api, project, other_user):
    services.create_project(other_user, name="Not mine")
    page = api.client.get("/mlexec/")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'href="/mlexec/projects/{project.slug}/"' in html
    assert "Not mine" not in html


def test_landing_requires_login(anonymous):
    page = anonymous.client.get("/mlexec/")
    assert page.status_code == 302
    assert "login" in page["Location"]


def test_project_page_renders_report_and_hides_others(api, diagnosed, other_user):
    project, _ = diagnosed
    page = api.client.get(f"/mlexec/projects/{project.slug}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "data_mismatch" in html and svg_count(html) == 3
    assert "8.5 points" in html  # expected gain of matching the distributions
    theirs = services.create_project(other_user, name="Theirs")
    assert api.client.get(f"/mlexec/projects/{theirs.slug}/").status_code == 404


def test_user_text_in_charts_is_escaped(api, project):
    services.record_run(
        project,
        name="x",
        metrics={"train": 0.1, "dev": 0.2},
        history=[{"key": "<script>alert(1)</script>", "value": 1, "step": 0}],
    )
    html = api.client.get(f"/mlexec/projects/{project.slug}/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    assert Run.objects.count() == 1


def test_admin_refuses_a_split_metric_outside_zero_to_one(admin_client, project):
    run = services.record_run(project, name="r", metrics={"dev": 0.1})
    page = admin_client.post(
        f"/admin/mlexec_app/run/{run.pk}/change/",
        {
            "project": project.pk,
            "name": "r",
            "status": "finished",
            "dev": "10",
            "params": "{}",
            "metrics": "{}",
            "artifacts": "[]",
            "source": "api",
        },
    )
    assert page.status_code == 200  # the form again, with the error
    assert "A fraction in [0, 1]" in page.content.decode()
    run.refresh_from_db()
    assert run.dev == 0.1
    # ...and the project page still renders its diagnosis.
    assert admin_client.get(f"/admin/mlexec_app/project/{project.pk}/change/").status_code == 200


def test_a_project_named_with_digits_is_found_by_its_slug(api, user):
    project = services.create_project(user, name="2024")
    assert project.slug == "2024"
    assert api.get("/projects/2024").json()["name"] == "2024"


# --- label review ------------------------------------------------------------------------------


def _label_job(project, given="<script>alert(1)</script>"):
    from mlexec_app.models import DiagnosticJob

    issues = [
        {
            "index": 7,
            "given": given,
            "suggested": "=1+1",
            "given_probability": 0.01,
            "suggested_probability": 0.97,
            "image": [i / 63 for i in range(64)],
        },
        {
            "index": 3,
            "given": "4",
            "suggested": "9",
            "given_probability": 0.1,
            "suggested_probability": 0.8,
        },
    ]
    return DiagnosticJob.objects.create(
        project=project,
        dataset="digits",
        status="finished",
        result={"label_issues": {"issues": issues, "image_shape": [8, 8]}},
    )


def test_label_review_lists_escapes_decides_and_exports(user, project):
    from django.test import Client

    job = _label_job(project)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    base = f"/mlexec/projects/{project.slug}/jobs/{job.pk}/labels/"
    page = client.get(base).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert page.index('id="row-7"') < page.index('id="row-3"')  # most suspicious first
    assert page.count("<rect") == 64  # the image, drawn as SVG
    assert (
        f"/jobs/{job.pk}/labels/"
        in client.get(f"/mlexec/projects/{project.slug}/").content.decode()
    )

    assert client.post(f"{base}7/", {"verdict": "accept"}).status_code == 403  # no CSRF token
    token = client.cookies["csrftoken"].value  # set by the page's form
    post = client.post(f"{base}7/", {"verdict": "accept", "csrfmiddlewaretoken": token})
    assert post.status_code == 303 and post["Location"].endswith("#row-7")
    assert (
        client.post(f"{base}3/", {"verdict": "maybe", "csrfmiddlewaretoken": token}).status_code
        == 400
    )
    assert (
        client.post(f"{base}5/", {"verdict": "accept", "csrfmiddlewaretoken": token}).status_code
        == 404
    )
    assert 'data-verdict="accept"' in client.get(base).content.decode()

    csv_response = client.get(f"/mlexec/projects/{project.slug}/jobs/{job.pk}/labels.csv")
    assert csv_response["Content-Type"] == "text/csv"
    assert csv_response.content.decode().splitlines() == [
        "index,given,corrected",
        "7,<script>alert(1)</script>,'=1+1",
    ]


def test_label_review_of_someone_elses_project_is_a_404(other_user, project):
    from django.test import Client

    job = _label_job(project)
    client = Client()
    client.force_login(other_user)
    assert client.get(f"/mlexec/projects/{project.slug}/jobs/{job.pk}/labels/").status_code == 404
    assert (
        client.post(
            f"/mlexec/projects/{project.slug}/jobs/{job.pk}/labels/7/", {"verdict": "accept"}
        ).status_code
        == 404
    )
