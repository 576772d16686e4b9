"""The cost curve fed by the site's measured traffic (MLEXEC_APP["TRAFFIC_SOURCE"]): the
project page, the admin, the REST cost model, the fallback to typed-in figures, the check and
the production gate."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mlexec_app import services
from mlexec_app.checks import check_settings

pytestmark = pytest.mark.django_db

SOURCES = "tests.mlexec_app.traffic_sources"
# Typed in by hand: ten calls a month, so the small model never pays back.
TYPED = {
    "llm_price_per_token": 1e-5,
    "tokens_per_call": 1000,
    "calls_per_month": 10,
    "fine_tune_cost": 18_000,
    "hosting_cost_per_month": 1000,
    "small_model_cost_per_call": 0.002,
}


@pytest.fixture
def bot_project(user):
    project = services.create_project(
        user, name="Support bot", problem_statement="Answer support questions.", data_type="text",
        abstraction_layer="llm_prompting", target_value=0.05, agent="support-bot",
    )  # fmt: skip
    services.save_cost_model(project, TYPED)
    return project


def source(settings, name):
    settings.MLEXEC_APP = {"TRAFFIC_SOURCE": f"{SOURCES}.{name}" if name else None}


def page_of(user, project):
    client = Client()
    client.force_login(user)
    page = client.get(f"/mlexec/projects/{project.slug}/")
    assert page.status_code == 200
    return page.content.decode()


def test_the_page_shows_the_curve_from_measured_traffic(settings, user, bot_project):
    source(settings, "steady")
    html = page_of(user, bot_project)
    # A cent a call measured, 0.2 cents to serve: each call saves 0.8 cents.
    assert 'data-inputs="measured"' in html and "Measured traffic of agent" in html
    assert '<span class="mlexec-break-even">125000 calls a month</span>' in html
    assert '<span class="mlexec-savings">7000.00</span>' in html  # 10,000 - 1,000 - 2,000
    assert '<span class="mlexec-payback">2.6</span>' in html  # 18,000 / 7,000
    assert '<td class="calls">1000000</td>' in html and '<td class="rated">42</td>' in html


def test_rest_gives_the_measured_curve_and_says_so(settings, api, bot_project):
    source(settings, "steady")
    body = api.get(f"/projects/{bot_project.slug}/cost-model").json()
    assert body["inputs"] == "measured" and body["agent"] == "support-bot"
    assert body["break_even_calls_per_month"] == pytest.approx(125_000)
    assert body["savings_per_month"] == pytest.approx(7000)
    assert body["payback_months"] == pytest.approx(18_000 / 7000)
    assert body["traffic"]["rated_conversations"] == 42
    saved = api.put(f"/projects/{bot_project.slug}/cost-model", {**TYPED, "fine_tune_cost": 7000})
    assert saved.json()["inputs"] == "measured" and saved.json()["payback_months"] == 1.0


@pytest.mark.parametrize(
    ("name", "note"),
    [
        (None, "No traffic source configured"),
        ("steady", None),  # the source knows another agent only
    ],
)
def test_without_traffic_the_typed_figures_are_used_and_named(
    settings, api, bot_project, name, note
):
    source(settings, name)
    if name:
        services.update_project(bot_project, agent="faq-bot")
        note = "No traffic measured for agent 'faq-bot'"
    body = api.get(f"/projects/{bot_project.slug}/cost-model").json()
    assert body["inputs"] == "typed" and body["traffic"] is None and note in body["note"]
    assert body["savings_per_month"] == pytest.approx(10 * 0.01 - 1000 - 10 * 0.002)
    assert body["payback_months"] is None


@pytest.mark.parametrize("name", ["broken", "nonsense", "negative"])
def test_a_failing_source_never_breaks_the_page(settings, caplog, user, api, bot_project, name):
    source(settings, name)
    with caplog.at_level(logging.ERROR, logger="mlexec_app.traffic"):
        html = page_of(user, bot_project)
    assert "Traffic unavailable" in html and 'data-inputs="typed"' in html
    assert "support-bot" in caplog.text and SOURCES in caplog.text  # the operator can see why
    body = api.get(f"/projects/{bot_project.slug}/cost-model").json()
    assert body["inputs"] == "typed" and "unavailable" in body["note"]


def test_the_admin_shows_the_measured_traffic_in_a_read_only_panel(settings, bot_project):
    source(settings, "steady")
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client()
    client.force_login(boss)
    html = client.get(f"/admin/mlexec_app/project/{bot_project.pk}/change/").content.decode()
    panel = html.split("Measured traffic (read only)", 1)[1].split("</fieldset>", 1)[0]
    assert '<td class="calls">1000000</td>' in panel and "<input" not in panel
    assert html.count('mlexec-traffic"') == 1  # the panel, not again in the cost section
    assert 'name="agent"' in html  # the project's agent is edited in the form


def test_the_agent_is_set_and_read_over_rest(api, project):
    changed = api.patch(f"/projects/{project.slug}", {"agent": "triage"})
    assert changed.status_code == 200 and changed.json()["agent"] == "triage"
    assert api.patch(f"/projects/{project.slug}", {"agent": "x" * 129}).status_code == 422


@pytest.mark.parametrize(
    ("path", "ids"),
    [
        (f"{SOURCES}.steady", []),
        (f"{SOURCES}.missing", ["mlexec_app.E009"]),
        ("no_such_package.traffic.measured", ["mlexec_app.E009"]),
        (f"{SOURCES}.NOT_A_FUNCTION", ["mlexec_app.E009"]),
        ("measured", ["mlexec_app.E009"]),
        (42, ["mlexec_app.E009"]),
        ("config.traffic.measured", []),  # what the demo site sets
    ],
)
def test_the_check_refuses_a_source_that_does_not_import(settings, path, ids):
    from django.apps import apps

    if path == "config.traffic.measured" and not apps.is_installed("config"):
        pytest.skip("the demo site's source reads sessions_app: a site with both apps only")
    settings.MLEXEC_APP = {"TRAFFIC_SOURCE": path}
    errors = check_settings()
    assert [e.id for e in errors] == ids and all(e.hint for e in errors)


def test_require_measured_cost_must_be_a_bool(settings):
    settings.MLEXEC_APP = {"REQUIRE_MEASURED_COST": "yes"}
    assert [e.id for e in check_settings()] == ["mlexec_app.E010"]


def test_the_measured_cost_gate_is_off_by_default_and_holds_production_when_on(
    settings, api, bot_project
):
    gates = f"/projects/{bot_project.slug}/gates?to=production"
    source(settings, "steady")
    assert "gate.cost_measured" not in [g["id"] for g in api.get(gates).json()["gates"]]
    settings.MLEXEC_APP = {"TRAFFIC_SOURCE": f"{SOURCES}.steady", "REQUIRE_MEASURED_COST": True}
    passed = {g["id"]: g["passed"] for g in api.get(gates).json()["gates"]}
    assert passed["gate.cost_measured"] is True
    services.update_project(bot_project, agent="faq-bot")  # nothing measured for it
    failing = api.get(gates).json()["gates"]
    assert [g for g in failing if g["id"] == "gate.cost_measured"][0]["passed"] is False
    moved = api.patch(f"/projects/{bot_project.slug}", {"stage": "production"})
    assert moved.status_code == 409
    assert "gate.cost_measured" in [d["id"] for d in moved.json()["detail"]]
