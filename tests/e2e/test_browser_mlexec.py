"""The mlexec label-review page in a real browser (Debian's chromium through Playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from mlexec_app import services
from mlexec_app.models import DiagnosticJob, LabelDecision
from tests.e2e.browser import fixtures
from tests.e2e.browser.fixtures import browser  # noqa: F401  (the chromium fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def screenshot_folder() -> Path:
    folder = (
        Path(fixtures.SCREENSHOTS_DIR)
        if fixtures.SCREENSHOTS_DIR
        else fixtures._scratch_screenshots()
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
    page.locator("#row-11").get_by_role("button", name="Keep 1").click()
    page.wait_for_url("**#row-11")
    assert page.locator("#row-10").get_attribute("data-verdict") == "accept"
    assert page.locator("#row-11 .verdict").inner_text() == "rejected"
    assert "2 of 4 decided, 1 accepted" in page.content()
    page.screenshot(path=str(screenshot_folder() / "mlexec-label-review.png"), full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name="Export the corrected labels (CSV)").click()
    text = Path(download.value.path()).read_text()
    assert text.splitlines() == ["index,given,corrected", "10,0,3"]
    assert LabelDecision.objects.count() == 2
    context.close()
