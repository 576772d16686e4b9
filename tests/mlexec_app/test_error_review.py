"""The error-analysis page: misclassified dev examples tagged by hand become the project's
error analysis, which the plan reads."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from django.test import Client

from mlexec_app import services
from mlexec_app.diagnostics import pipeline
from mlexec_app.diagnostics.baseline import BaselineResult
from mlexec_app.diagnostics.data import load_csv
from mlexec_app.models import DiagnosticJob, ErrorAnalysis

pytestmark = pytest.mark.django_db


def _job(project, examples, dev_error=0.2):
    return DiagnosticJob.objects.create(
        project=project,
        dataset="digits",
        status="finished",
        result={
            "dataset": {"image_shape": [1, 8, 8]},
            "baseline": {"errors": {"dev": dev_error}, "misclassified": examples},
        },
    )


def _examples(n=5):
    return [
        {
            "index": 100 + i,
            "given": str(i),
            "predicted": "<b>8</b>" if i == 0 else str((i + 1) % 10),
            "image": [((p * (i + 2)) % 11) / 10 for p in range(64)],
        }
        for i in range(n)
    ]


@pytest.fixture
def browserlike(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _token(client, url):
    client.get(url)
    return client.cookies["csrftoken"].value


def test_tagging_examples_records_the_error_analysis_the_plan_reads(browserlike, project):
    job = _job(project, _examples())
    job.run = services.record_run(project, name="baseline", metrics={"train": 0.15, "dev": 0.2})
    job.save()
    base = f"/mlexec/projects/{project.slug}/jobs/{job.pk}/errors/"
    page = browserlike.get(base).content.decode()
    assert page.count('class="example"') == 5
    assert page.count("<rect") == 5 * 64  # each example's image, drawn as SVG
    assert "<b>8</b>" not in page and "&lt;b&gt;8&lt;/b&gt;" in page
    assert "No example tagged yet" in page

    token = _token(browserlike, base)
    assert browserlike.post(f"{base}100/", {"category": "ambiguous"}).status_code == 403
    for index, category in [(100, "wrong label"), (101, "wrong label"), (101, "ambiguous"),
                            (102, "ambiguous")]:  # fmt: skip
        answer = browserlike.post(
            f"{base}{index}/", {"category": category, "csrfmiddlewaretoken": token}
        )
        assert answer.status_code == 303 and answer["Location"].endswith(f"#ex-{index}")

    analysis = services.latest_error_analysis(project)
    assert analysis.source == "error_review" and analysis.sample_size == 3
    assert analysis.categories == {"wrong label": 2, "ambiguous": 2}
    ceilings = {c.category: c.ceiling for c in services.category_ceilings(project, 0.2)}
    assert ceilings["wrong label"] == pytest.approx(0.2 * 2 / 3)
    assert ErrorAnalysis.objects.get().run == job.run
    plan = services.plan_project(project)
    assert "plan.data_quality.fix_labels" in [c.rule_id for c in plan.recommended]

    # The script's request: JSON with the example's tags and the ceilings again.
    answer = browserlike.post(
        f"{base}100/",
        {"category": "wrong label", "csrfmiddlewaretoken": token},
        HTTP_ACCEPT="application/json",
    )
    body = json.loads(answer.content)
    assert body["tags"] == [] and "2 examples tagged" in body["ceilings_html"]
    assert ErrorAnalysis.objects.filter(source="error_review").count() == 1  # rewritten in place
    assert services.latest_error_analysis(project).categories == {"wrong label": 1, "ambiguous": 2}
    page = browserlike.get(base).content.decode()
    assert (
        page.count('aria-pressed="true"><kbd>') == 3
    )  # row 101 carries two tags, 102 one; 100 none


def test_bad_tags_change_nothing_and_new_categories_are_escaped(browserlike, project):
    job = _job(project, _examples(2))
    base = f"/mlexec/projects/{project.slug}/jobs/{job.pk}/errors/"
    token = _token(browserlike, base)
    post = lambda url, data: browserlike.post(url, {**data, "csrfmiddlewaretoken": token})  # noqa: E731
    assert post(f"{base}100/", {"category": "not offered"}).status_code == 400
    assert post(f"{base}7/", {"category": "ambiguous"}).status_code == 404  # not a wrong example
    assert post(f"{base}categories/", {"name": "   "}).status_code == 400
    assert post(f"{base}categories/", {"name": "x" * 41}).status_code == 400
    assert post(f"{base}categories/", {"name": "bad\x00name"}).status_code == 400
    assert not ErrorAnalysis.objects.exists()

    assert post(f"{base}categories/", {"name": "<i>blurry</i>"}).status_code == 303
    assert post(f"{base}100/", {"category": "<i>blurry</i>"}).status_code == 303
    page = browserlike.get(base).content.decode()
    assert "<i>blurry</i>" not in page and "&lt;i&gt;blurry&lt;/i&gt;" in page
    assert services.latest_error_analysis(project).categories == {"<i>blurry</i>": 1}


def test_someone_elses_or_an_unfinished_job_is_a_404(other_user, project):
    job = _job(project, _examples(1))
    client = Client()
    client.force_login(other_user)
    base = f"/mlexec/projects/{project.slug}/jobs/{job.pk}/errors/"
    assert client.get(base).status_code == 404
    assert client.post(f"{base}100/", {"category": "ambiguous"}).status_code == 404
    assert client.post(f"{base}categories/", {"name": "mine"}).status_code == 404
    owner = Client()
    owner.force_login(project.owner)
    DiagnosticJob.objects.filter(pk=job.pk).update(status="running")
    assert owner.get(base).status_code == 404
    assert not ErrorAnalysis.objects.exists()


def test_the_project_page_links_the_error_analysis(api, project):
    job = _job(project, _examples(1))
    page = api.client.get(f"/mlexec/projects/{project.slug}/").content.decode()
    assert f"/jobs/{job.pk}/errors/" in page


def test_the_baseline_keeps_its_misclassified_dev_examples_bounded_and_readable(tmp_path):
    path = tmp_path / "loans.csv"
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["income", "city", "label"])
        for i in range(600):
            writer.writerow([round(float(rng.normal()), 3), ["Oslo", "Lima"][i % 2], i % 3])
    data = load_csv(path)
    dev = np.arange(0, 600, 2)
    base = BaselineResult({}, {}, {}, {}, None, dev, (data.y[dev] + 1) % 3)  # all wrong
    kept = pipeline.misclassified(data, base)
    assert len(kept) == pipeline.MISCLASSIFIED_IN_REPORT
    assert kept[0]["index"] == 0 and kept[0]["given"] == "0" and kept[0]["predicted"] == "1"
    assert kept[0]["features"] == [["income", round(float(data.X[0, 0]), 4)], ["city", "Oslo"]]
    assert "image" not in kept[0]


def test_a_diagnostic_job_stores_its_misclassified_dev_examples_with_images():
    from mlexec_app.diagnostics.data import load_demo
    from mlexec_app.diagnostics.networks import ModelSpec
    from mlexec_app.diagnostics.training import TrainConfig

    data = load_demo("digits").subset(np.arange(400))
    plan = pipeline.Plan(
        diagnostics=("baseline",), model=ModelSpec(), train=TrainConfig(epochs=1, min_steps=1)
    )
    report = pipeline.run_diagnostics(data, plan)
    wrong = report["baseline"]["misclassified"]
    assert wrong and len(wrong) <= pipeline.MISCLASSIFIED_IN_REPORT
    assert all(e["given"] != e["predicted"] and len(e["image"]) == 64 for e in wrong)
    assert len(wrong) == min(
        round(report["baseline"]["errors"]["dev"] * report["baseline"]["sizes"]["dev"]),
        pipeline.MISCLASSIFIED_IN_REPORT,
    )
