"""REST API: diagnosis computed from the runs, the plan, interventions and the cost curve."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from mlexec_app import services
from mlexec_app.models import CostModel, Intervention

pytestmark = pytest.mark.django_db


def log(project, name="r", **metrics):
    return services.record_run(project, name=name, metrics=metrics)


def test_diagnosis_of_the_data_mismatch_example(api, sized_project):
    log(sized_project, train=0.01, train_dev=0.015, dev=0.10)
    body = api.get(f"/projects/{sized_project.slug}/diagnosis").json()
    assert body["dominant"] == "data_mismatch"
    assert body["confidence"] == "decided"
    gaps = {g["problem"]: g for g in body["gaps"]}
    assert gaps["data_mismatch"]["estimate"] == pytest.approx(0.085)
    assert gaps["data_mismatch"]["verdict"] == "present"
    assert "diagnose.data_mismatch" in [f["rule_id"] for f in body["findings"]]
    assert "pre-trained" in body["recommendation"]["approach"]


def test_accuracy_projects_get_the_same_diagnosis(api, user):
    project = services.create_project(
        user,
        name="Acc",
        metric_name="accuracy",
        metric_direction="higher",
        human_level=0.99,
        target_value=0.98,
    )
    services.record_assessment(project, train_size=50_000, train_dev_size=10_000, dev_size=10_000)
    log(project, train=0.92, dev=0.90)
    body = api.get(f"/projects/{project.slug}/diagnosis").json()
    assert body["dominant"] == "avoidable_bias"
    assert body["errors"]["train"] == pytest.approx(0.08)
    assert body["errors"]["human"] == pytest.approx(0.01)


def test_diagnosis_reads_the_newest_usable_run_or_the_one_asked_for(api, sized_project):
    old = log(sized_project, "old", train=0.08, dev=0.10)
    log(sized_project, "new", train=0.01, train_dev=0.015, dev=0.10)
    services.record_run(
        sized_project, name="crashed", metrics={"train": 0.5, "dev": 0.5}, status="failed"
    )
    assert api.get(f"/projects/{sized_project.slug}/diagnosis").json()["dominant"] == (
        "data_mismatch"
    )
    chosen = api.get(f"/projects/{sized_project.slug}/diagnosis?run={old.pk}").json()
    assert chosen["run"] == old.pk and chosen["dominant"] == "avoidable_bias"


def test_small_dev_set_makes_the_diagnosis_inconclusive(api, project):
    services.record_assessment(project, train_size=5000, train_dev_size=60, dev_size=60)
    log(project, train=0.05, train_dev=0.06, dev=0.08)
    body = api.get(f"/projects/{project.slug}/diagnosis").json()
    assert body["confidence"] == "inconclusive"
    assert "diagnose.small_dev_set" in [f["rule_id"] for f in body["findings"]]


def test_diagnosis_without_runs_says_what_is_missing(api, project):
    body = api.get(f"/projects/{project.slug}/diagnosis").json()
    assert body["run"] is None
    assert body["confidence"] == "not_enough_data"


def test_error_analysis_shows_up_as_category_ceilings(api, sized_project):
    log(sized_project, train=0.08, dev=0.10)
    services.record_error_analysis(sized_project, {"dog": 5, "blurry": 43}, 100)
    cats = api.get(f"/projects/{sized_project.slug}/diagnosis").json()["categories"]
    assert [c["category"] for c in cats] == ["blurry", "dog"]
    assert cats[1]["ceiling"] == pytest.approx(0.005)


def test_plan_then_adopt_then_finish_then_more_compute(api, user):
    project = services.create_project(
        user,
        name="Churn",
        data_type="tabular",
        abstraction_layer="traditional_ml",
        human_level=0.01,
    )
    services.record_assessment(project, train_size=50_000, train_dev_size=10_000, dev_size=10_000)
    log(project, train=0.08, train_dev=0.085, dev=0.09)
    plan = api.get(f"/projects/{project.slug}/plan").json()
    assert [c["rule_id"] for c in plan["recommended"]] == [
        "plan.hyperparameters.fit_better",
        "plan.architecture.bias",
    ]
    assert [c["rule_id"] for c in plan["deferred"]] == ["plan.more_compute.scale_up"]

    early = api.post(
        f"/projects/{project.slug}/interventions", {"rule_ids": ["plan.more_compute.scale_up"]}
    )
    assert early.status_code == 409 and early.json()["code"] == "compute_deferred"
    assert Intervention.objects.count() == 0

    adopted = api.post(f"/projects/{project.slug}/interventions", {}).json()
    assert [i["rule_id"] for i in adopted] == [c["rule_id"] for c in plan["recommended"]]
    assert adopted[0]["diagnosis"]["dominant"] == "avoidable_bias"
    again = api.post(f"/projects/{project.slug}/interventions", {}).json()
    assert again == []  # already open: not adopted twice

    for item in adopted:
        done = api.patch(f"/interventions/{item['id']}", {"status": "done", "realized_gain": 0.01})
        assert done.status_code == 200 and done.json()["realized_gain"] == 0.01
    plan = api.get(f"/projects/{project.slug}/plan").json()
    assert plan["next"]["rule_id"] == "plan.more_compute.scale_up"
    assert [c["state"] for c in plan["tried"]] == ["tried", "tried"]


def test_intervention_updates_are_validated(api, sized_project):
    log(sized_project, train=0.08, dev=0.10)
    item = api.post(f"/projects/{sized_project.slug}/interventions", {}).json()[0]
    bad_status = api.patch(f"/interventions/{item['id']}", {"status": "celebrated"})
    assert bad_status.status_code == 422 and bad_status.json()["code"] == "invalid_input"
    bad_gain = api.patch(f"/interventions/{item['id']}", {"realized_gain": 3})
    assert bad_gain.status_code == 422
    api.patch(f"/interventions/{item['id']}", {"status": "abandoned"})
    reopen = api.patch(f"/interventions/{item['id']}", {"status": "in_progress"})
    assert reopen.status_code == 409 and reopen.json()["code"] == "invalid_transition"
    assert Intervention.objects.get(pk=item["id"]).status == "abandoned"


def test_adopting_a_rule_that_is_not_in_the_plan_is_refused(api, sized_project):
    log(sized_project, train=0.08, dev=0.10)
    response = api.post(
        f"/projects/{sized_project.slug}/interventions", {"rule_ids": ["plan.invented"]}
    )
    assert response.status_code == 422 and response.json()["code"] == "not_in_plan"


COST = {
    "llm_price_per_token": 1e-5,
    "tokens_per_call": 1000,
    "calls_per_month": 1_000_000,
    "fine_tune_cost": 18_000,
    "hosting_cost_per_month": 1000,
}


def test_cost_curve_inputs_in_result_out(api):
    body = api.post("/cost-curve", COST).json()
    assert body["break_even_calls_per_month"] == pytest.approx(100_000)
    assert body["payback_months"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    "change", [{"calls_per_month": -1}, {"throughput_per_second": 0}, {"tokens_per_call": None}]
)
def test_bad_cost_inputs_are_coded_422(api, project, change):
    body = {**COST, **change}
    assert api.post("/cost-curve", body).status_code == 422
    saved = api.put(f"/projects/{project.slug}/cost-model", body)
    assert saved.status_code == 422 and saved.json()["code"] == "invalid_input"
    assert CostModel.objects.count() == 0


# Figures past a float's range: the curve answered Infinity (no JSON parser but Python's reads
# it), and a saved model answered it on every read.
OVERFLOWING = [
    {"llm_price_per_token": 1e308},
    {"hosting_cost_per_month": 1e308, "small_model_cost_per_call": 1e308},
    {"llm_price_per_token": 1e-300, "tokens_per_call": 1, "hosting_cost_per_month": 1e15},
]


@pytest.mark.parametrize("change", OVERFLOWING)
def test_a_curve_past_a_float_s_range_is_refused_and_not_saved(api, project, change):
    body = {**COST, **change}
    answer = api.post("/cost-curve", body)
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_cost_input")
    json.loads(answer.content, parse_constant=pytest.fail)  # strict JSON: no Infinity
    saved = api.put(f"/projects/{project.slug}/cost-model", body)
    assert (saved.status_code, saved.json()["code"]) == (422, "invalid_cost_input")
    assert CostModel.objects.count() == 0


def test_a_model_saved_past_a_float_s_range_is_explained_not_a_500(api, user, project):
    CostModel.objects.create(project=project, **{**COST, "llm_price_per_token": 1e308})
    answer = api.get(f"/projects/{project.slug}/cost-model")
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_cost_input")
    page = Client()
    page.force_login(user)
    shown = page.get(f"/mlexec/projects/{project.slug}/")
    assert shown.status_code == 200 and b"The saved cost model gives no curve" in shown.content


def test_project_cost_model_is_saved_and_read_back(api, project):
    assert api.get(f"/projects/{project.slug}/cost-model").status_code == 404
    assert api.put(f"/projects/{project.slug}/cost-model", COST).status_code == 200
    body = api.get(f"/projects/{project.slug}/cost-model").json()
    assert body["savings_per_month"] == pytest.approx(9000)


def test_openapi_schema_documents_the_coded_errors(api):
    schema = api.client.get("/api/openapi.json").json()
    operation = schema["paths"]["/api/mlexec/projects"]["post"]
    error = operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert error.endswith("/ErrorOut")
    assert "code" in schema["components"]["schemas"]["ErrorOut"]["required"]
