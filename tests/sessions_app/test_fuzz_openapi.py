"""schemathesis against the site's published OpenAPI schema (``/api/openapi.json``).

Every operation of the schema (both apps on the demo site: sessions_app and mlexec_app) gets
generated requests, authenticated with an API key of the right app, with the path parameters
pointing at resources that exist (so validation is reached, not just a 404). No answer may be a
5xx, and a refused request (4xx) must not add or remove a row in either app's tables.
``FUZZ_REST_EXAMPLES`` sets the examples per operation (bounded in CI).
"""

from __future__ import annotations

import json
import os

import pytest
from django.apps import apps
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings

from sessions_app import keys, log, services
from sessions_app.models import Session

schemathesis = pytest.importorskip("schemathesis")

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("FUZZ_REST_EXAMPLES", "5"))
APPS = [name for name in ("sessions_app", "mlexec_app") if apps.is_installed(name)]


@pytest.fixture
def world(alice):
    session = Session.objects.create(name="chat-1", owner=alice)
    log.append_sync(services.request(session.pk, [{"type": "RUN_STARTED", "run": "r1"}]))
    params = {"name": "chat-1", "run_id": "r1", "username": "alice"}
    secret = keys.create_key(alice, "fuzz", all_sessions=True)[1]
    headers = {"sessions": {"Authorization": f"Bearer {secret}"}}
    if "mlexec_app" in APPS:
        from mlexec_app import keys as ml_keys
        from mlexec_app import services as ml_services

        project = ml_services.create_project(
            alice, name="Cat detector", problem_statement="p", data_type="image",
            abstraction_layer="deep_learning", metric_name="error", target_value=0.02,
        )  # fmt: skip
        run = ml_services.record_run(project, name="r", metrics={"train": 0.1, "dev": 0.2})
        raw = ml_keys.create_api_key(alice, "fuzz", all_projects=True)[1]
        headers["mlexec"] = {"Authorization": f"Bearer {raw}"}
        params.update(ref=project.slug, run_id_ml=run.pk, key="train")
    return params, headers


@pytest.fixture(autouse=True)
def _short_long_polls(settings):
    settings.SESSIONS_APP = {"REST_LONG_POLL_MAX": 0.2, "TURN_CLAIM_WAIT_MAX": 0.2}


@pytest.fixture(autouse=True)
def _jobs_wait_in_the_queue(settings):
    # As on a site with a job worker: an accepted job is queued, not run inside the request
    # (the suite's inline backend would train a model for every generated job body; the
    # jobs' own runs are tested in tests/mlexec_app).
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}


def rows() -> dict[str, int]:
    return {
        model._meta.label: model._default_manager.count()
        for name in APPS
        for model in apps.get_app_config(name).get_models()
    }


# The published schema, as a client gets it (serving it reads no database).
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_nothing_written_for_rejected_input(case, world):
    params, headers = world
    app = "mlexec" if case.path.startswith("/api/mlexec") else "sessions"
    for key in list(case.path_parameters or {}):
        if app == "mlexec" and key == "run_id" and "run_id_ml" in params:
            case.path_parameters[key] = params["run_id_ml"]
        elif key in params:
            case.path_parameters[key] = params[key]
    before = rows()
    response = case.call(headers=headers[app])
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:500]}"
    if response.status_code >= 400:
        assert rows() == before, f"{case.method} {case.formatted_path} refused, yet wrote"


COST_OVERFLOW = {
    "llm_price_per_token": 0, "tokens_per_call": 0, "calls_per_month": 1e300,
    "fine_tune_cost": 0, "hosting_cost_per_month": 0, "throughput_per_second": 1e-300,
}  # fmt: skip


@pytest.mark.skipif("mlexec_app" not in APPS, reason="mlexec_app is not installed")
@pytest.mark.parametrize("method", ["post", "put"])
def test_cost_inputs_whose_ratio_overflows_are_refused_not_a_500(world, client, method):
    params, headers = world
    path = (
        "/api/mlexec/cost-curve"
        if method == "post"
        else f"/api/mlexec/projects/{params['ref']}/cost-model"
    )
    before = rows()
    call = getattr(client, method)
    response = call(path, data=json.dumps(COST_OVERFLOW), content_type="application/json",
                    headers=headers["mlexec"])  # fmt: skip
    assert response.status_code < 500
    assert response.status_code < 300 or rows() == before


@pytest.mark.skipif("mlexec_app" not in APPS, reason="mlexec_app is not installed")
def test_a_null_problem_statement_with_a_stage_move_is_refused_not_a_500(world, client):
    params, headers = world
    before = rows()
    response = client.patch(
        f"/api/mlexec/projects/{params['ref']}",
        data=json.dumps({"problem_statement": None, "stage": "prototype"}),
        content_type="application/json",
        headers=headers["mlexec"],
    )
    assert response.status_code < 500
    assert response.status_code < 300 or rows() == before


HUGE = 2**63  # one past the largest 64-bit integer a database takes for LIMIT and OFFSET
PAGED = [
    ("sessions", "/api/sessions/?offset={n}"),
    ("mlexec", "/api/mlexec/projects?offset={n}"),
    ("mlexec", "/api/mlexec/projects?limit={n}"),
    ("mlexec", "/api/mlexec/projects/{ref}/runs?offset={n}"),
]


@pytest.mark.parametrize(("app", "path"), PAGED, ids=[p for _, p in PAGED])
def test_a_page_offset_beyond_64_bits_is_refused_not_a_500(world, app, path):
    from django.test import Client

    params, headers = world
    if app not in headers:
        pytest.skip(f"{app} is not installed")
    url = path.format(n=HUGE, ref=params.get("ref"))
    response = Client(raise_request_exception=False).get(url, headers=headers[app])
    assert response.status_code < 500
