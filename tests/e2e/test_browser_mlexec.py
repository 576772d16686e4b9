"""The mlexec label-review page in a real browser (Debian's chromium through Playwright)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from mlexec_app import services
from mlexec_app.models import DiagnosticJob, ErrorAnalysis, LabelDecision
from tests.e2e.browser import fixtures
from tests.e2e.browser.fixtures import browser  # noqa: F401  (the chromium fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture(scope="module", autouse=True)
def orm_beside_playwright():
    # Playwright's sync API keeps an event loop running in this thread; the test's own ORM
    # calls (and the database flush after it) are still plain synchronous ones. Module scope:
    # set before and removed after every function fixture of this module.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture
def labelled(transactional_db):
    user = get_user_model().objects.create_user("reviewer", password="pw")
    project = services.create_project(user, name="Digits <noisy>", data_type="image")
    issues = [
        {
            "index": 10 + n,
            "given": str(n),
            "suggested": str((n + 3) % 10),
            "given_probability": 0.02 * n,
            "suggested_probability": 0.9 - 0.02 * n,
            "image": [((i * (n + 1)) % 17) / 16 for i in range(64)],
        }
        for n in range(4)
    ]
    job = DiagnosticJob.objects.create(
        project=project,
        dataset="digits",
        status="finished",
        result={"label_issues": {"issues": issues, "image_shape": [8, 8]}},
    )
    client = Client()
    client.force_login(user)
    return project, job, client.cookies[settings.SESSION_COOKIE_NAME].value


def test_accepting_and_keeping_labels_in_the_browser(browser, labelled, live_server):  # noqa: F811
    project, job, session = labelled
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/mlexec/projects/{project.slug}/")
    page.get_by_role("link", name=f"Review the suspected labels of job #{job.pk}").click()
    assert page.locator("h1").inner_text() == "Label review: Digits <noisy>"
    assert page.locator("tbody tr").count() == 4
    assert page.locator("#row-10 svg rect").count() == 64

    page.locator("#row-10").get_by_role("button", name="Accept 3").click()
    expect(page.locator("#row-10 .verdict")).to_have_text("accepted")
    # The keyboard: the script moved to the next row; r keeps its label, a accepts the next.
    expect(page.locator("#row-11")).to_have_class("current")
    page.keyboard.press("r")
    expect(page.locator("#row-11 .verdict")).to_have_text("rejected")
    page.keyboard.press("a")
    expect(page.locator("#summary")).to_have_text("3 of 4 decided, 2 accepted.")
    page.keyboard.press("k")
    page.keyboard.press("k")
    page.keyboard.press("r")  # row 11 again: changed its mind? no, kept again
    page.reload()
    assert page.locator("#row-10").get_attribute("data-verdict") == "accept"
    assert page.locator("#row-12").get_attribute("data-verdict") == "accept"
    assert "3 of 4 decided, 2 accepted" in page.content()
    page.screenshot(
        path=str(fixtures.screenshot_folder() / "mlexec-label-review.png"), full_page=True
    )

    with page.expect_download() as download:
        page.get_by_role("link", name="Export the corrected labels (CSV)").click()
    text = Path(download.value.path()).read_text()
    assert text.splitlines() == ["index,given,corrected", "10,0,3", "12,2,5"]
    with page.expect_download() as download:
        page.get_by_role("link", name="NPZ").click()
    with np.load(download.value.path(), allow_pickle=False) as archive:
        assert archive["index"].tolist() == [10, 12]
    assert LabelDecision.objects.count() == 3
    context.close()


@pytest.fixture
def misclassified(transactional_db):
    user = get_user_model().objects.create_user("analyst", password="pw")
    project = services.create_project(user, name="Digits & <co>", data_type="image")
    run = services.record_run(project, name="mlp", metrics={"train": 0.05, "dev": 0.2})
    examples = [
        {
            "index": 200 + n,
            "given": str(n),
            "predicted": str((n + 5) % 10),
            "image": [((i * (n + 2)) % 13) / 12 for i in range(64)],
        }
        for n in range(6)
    ]
    job = DiagnosticJob.objects.create(
        project=project,
        dataset="digits",
        status="finished",
        run=run,
        result={
            "dataset": {"image_shape": [1, 8, 8]},
            "baseline": {"errors": {"dev": 0.2}, "misclassified": examples},
        },
    )
    client = Client()
    client.force_login(user)
    return project, job, client.cookies[settings.SESSION_COOKIE_NAME].value


def test_tagging_errors_by_click_and_keyboard_in_the_browser(browser, misclassified, live_server):  # noqa: F811
    project, job, session = misclassified
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/mlexec/projects/{project.slug}/")
    page.get_by_role("link", name=f"Tag the misclassified dev examples of job #{job.pk}").click()
    assert page.locator("h1").inner_text() == "Error analysis: Digits & <co>"
    assert page.locator(".example").count() == 6
    assert page.locator("#ex-200 svg rect").count() == 64
    expect(page.locator("#ceilings")).to_contain_text("No example tagged yet")

    # A click tags in place; the ceilings follow (1 of 1 tagged: the whole dev error).
    page.locator("#ex-200").get_by_role("button", name="wrong label").click()
    expect(page.locator('#ceilings tr[data-category="wrong label"] .ceiling')).to_have_text(
        "20.0 points"
    )
    # Keys: j to the next example, 1 and 2 put two categories on it, j then 2 on the third.
    page.keyboard.press("j")
    page.keyboard.press("1")
    page.keyboard.press("2")
    expect(page.locator("#ex-201 button[aria-pressed=true]")).to_have_count(2)
    page.keyboard.press("j")
    page.keyboard.press("2")
    expect(page.locator("#ceilings caption")).to_contain_text("3 examples tagged")
    expect(page.locator('#ceilings tr[data-category="ambiguous"] .count')).to_have_text("2")
    page.screenshot(
        path=str(fixtures.screenshot_folder() / "mlexec-error-analysis.png"), full_page=True
    )

    page.keyboard.press("2")  # off again
    expect(page.locator('#ceilings tr[data-category="ambiguous"] .count')).to_have_text("1")
    analysis = ErrorAnalysis.objects.get()
    assert analysis.sample_size == 2
    assert analysis.categories == {"wrong label": 2, "ambiguous": 1}
    plan = services.plan_project(project)
    assert "plan.data_quality.fix_labels" in [c.rule_id for c in plan.recommended]
    context.close()
