"""REST API: projects, assessments, authentication and who sees what."""

from __future__ import annotations

import pytest
from django.test import Client

from mlexec_app.models import ApiKey, DataAssessment, Project
from tests.mlexec_app.conftest import Api

pytestmark = pytest.mark.django_db


def test_create_then_read_a_project(api):
    created = api.post(
        "/projects",
        {
            "name": "Spam filter",
            "data_type": "text",
            "metric_name": "accuracy",
            "metric_direction": "higher",
            "target_value": 0.98,
            "human_level": 0.99,
        },
    )
    assert created.status_code == 201
    body = created.json()
    assert body["slug"] == "spam-filter"
    again = api.get("/projects/spam-filter")
    assert again.status_code == 200
    assert again.json()["metric_direction"] == "higher"
    assert api.get(f"/projects/{body['id']}").json()["slug"] == "spam-filter"


def test_list_shows_only_my_projects(api, project, other_user):
    Project.objects.create(owner=other_user, name="Theirs", slug="theirs")
    listed = api.get("/projects").json()
    assert [p["slug"] for p in listed["items"]] == [project.slug]
    assert listed["count"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "data_type": "video"}, "data_type"),
        ({"name": "x", "target_value": 1.5}, "target_value"),
        ({"name": "x", "metric_direction": "sideways"}, "metric_direction"),
        ({"name": "x", "slug": "has spaces"}, "slug"),
    ],
)
def test_bad_project_input_is_a_coded_422_and_writes_nothing(api, body, field):
    response = api.post("/projects", body)
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "invalid_input"
    assert any(field in item["loc"] for item in error["detail"])
    assert Project.objects.count() == 0


def test_malformed_json_is_a_coded_400(api):
    response = api.post("/projects", raw="{not json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"
    assert Project.objects.count() == 0


def test_taken_slug_is_refused_with_its_own_code(api, project):
    response = api.post("/projects", {"name": "Again", "slug": project.slug})
    assert response.status_code == 422
    assert response.json()["code"] == "slug_taken"


def test_anonymous_caller_gets_a_coded_401(anonymous, project):
    response = anonymous.get("/projects")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_writes_without_credentials_answer_401_and_cookie_writes_still_need_csrf(user, project):
    writes = [("post", "/projects", {"name": "x"}), ("post", f"/projects/{project.slug}/runs", {}),
              ("post", f"/projects/{project.slug}/diagnostic-jobs", {"dataset": "digits"})]  # fmt: skip
    # A browser's Client: Django's test client skips CSRF unless asked to enforce it.
    nobody = Api(Client(enforce_csrf_checks=True))
    wrong_key = Api(Client(enforce_csrf_checks=True), key="mlx_nothing_here")
    for caller in (nobody, wrong_key):
        for method, path, body in writes:
            response = caller.call(method, path, body)
            assert response.status_code == 401, (path, response.content)
            assert response.json()["code"] == "unauthenticated"
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = Api(browser).post("/projects", {"name": "x"})
    assert response.status_code == 403


def test_someone_elses_project_is_indistinguishable_from_a_missing_one(api, other_user):
    theirs = Project.objects.create(owner=other_user, name="Theirs", slug="theirs")
    hidden = api.get(f"/projects/{theirs.slug}")
    missing = api.get("/projects/no-such-project")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["code"] == missing.json()["code"] == "not_found"
    assert api.patch(f"/projects/{theirs.slug}", {"name": "mine now"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "Theirs"


def test_update_a_project(api, project):
    response = api.patch(f"/projects/{project.slug}", {"human_level": 0.005, "stage": "prototype"})
    assert response.status_code == 200
    project.refresh_from_db()
    assert (project.human_level, project.stage) == (0.005, "prototype")


def test_moving_to_production_is_stopped_by_failing_gates(api, project):
    response = api.patch(f"/projects/{project.slug}", {"stage": "production"})
    assert response.status_code == 409
    error = response.json()
    assert error["code"] == "stage_gate_failed"
    assert "gate.target_met" in [g["id"] for g in error["detail"]]
    project.refresh_from_db()
    assert project.stage == "scoping"
    forced = api.patch(f"/projects/{project.slug}", {"stage": "production", "force": True})
    assert forced.status_code == 200


def test_gates_endpoint_lists_checks_for_the_next_stage(api, project):
    body = api.get(f"/projects/{project.slug}/gates").json()
    assert body["to"] == "prototype"
    assert body["can_move"] is True
    assert {g["id"] for g in body["gates"]} == {
        "gate.problem_statement",
        "gate.target",
        "gate.human_level",
    }
    bad = api.get(f"/projects/{project.slug}/gates?to=heaven")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_choice"


def test_assessment_round_trip_and_validation(api, project):
    good = api.post(
        f"/projects/{project.slug}/assessments",
        {
            "train_size": 100_000,
            "train_dev_size": 5_000,
            "dev_size": 5_000,
            "test_size": 5_000,
            "class_balance": {"cat": 0.3, "not cat": 0.7},
            "label_quality": 0.97,
            "train_source": "web crawl",
            "dev_source": "mobile app uploads",
        },
    )
    assert good.status_code == 201
    bad = api.post(f"/projects/{project.slug}/assessments", {"dev_size": 0})
    assert bad.status_code == 422
    listed = api.get(f"/projects/{project.slug}/assessments").json()["items"]
    assert [a["dev_source"] for a in listed] == ["mobile app uploads"]
    assert DataAssessment.objects.count() == 1


# --- API keys ------------------------------------------------------------------------------


def test_key_is_shown_once_and_then_authenticates(api, project):
    created = api.post("/api-keys", {"name": "trainer", "projects": [project.slug]})
    assert created.status_code == 201
    raw = created.json()["key"]
    stored = ApiKey.objects.get()
    assert raw not in stored.hashed_key and stored.prefix in raw
    listed = api.get("/api-keys").json()["items"]
    assert "key" not in listed[0]
    from django.test import Client

    from tests.mlexec_app.conftest import Api

    agent = Api(Client(), raw)
    assert agent.get(f"/projects/{project.slug}").status_code == 200
    stored.refresh_from_db()
    assert stored.last_used_at is not None


def test_a_scoped_key_reaches_only_its_projects(key_for, project, user):
    from mlexec_app import services

    other = services.create_project(user, name="Other of mine")
    agent = key_for(project)
    assert agent.get(f"/projects/{project.slug}").status_code == 200
    assert agent.get(f"/projects/{other.slug}").status_code == 404
    assert [p["slug"] for p in agent.get("/projects").json()["items"]] == [project.slug]
    refused = agent.post("/projects", {"name": "new"})
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"


def test_an_all_projects_key_creates_projects_for_its_owner(key_for, user, project):
    agent = key_for(all_projects=True)
    created = agent.post("/projects", {"name": "Agent made"})
    assert created.status_code == 201
    assert Project.objects.get(slug="agent-made").owner == user
    assert agent.get(f"/projects/{project.slug}").status_code == 200


def test_revoked_and_forged_keys_are_refused(api, project, key_for):
    created = api.post("/api-keys", {"name": "t", "all_projects": True}).json()
    from django.test import Client

    from tests.mlexec_app.conftest import Api

    agent = Api(Client(), created["key"])
    assert agent.get("/projects").status_code == 200
    assert api.delete(f"/api-keys/{created['id']}").status_code == 200
    assert agent.get("/projects").status_code == 401
    forged = Api(Client(), created["key"][:-3] + "xyz")
    assert forged.get("/projects").status_code == 401


def test_keys_cannot_mint_keys(key_for):
    agent = key_for(all_projects=True)
    response = agent.post("/api-keys", {"name": "child", "all_projects": True})
    assert response.status_code == 403
    assert response.json()["code"] == "session_required"
    assert ApiKey.objects.count() == 1


def test_a_key_needs_a_scope(api):
    response = api.post("/api-keys", {"name": "nothing"})
    assert response.status_code == 422
    assert response.json()["code"] == "key_scope"
    assert ApiKey.objects.count() == 0


def test_a_key_for_someone_elses_project_is_refused(api, other_user):
    theirs = Project.objects.create(owner=other_user, name="Theirs", slug="theirs")
    response = api.post("/api-keys", {"name": "sneaky", "projects": [theirs.slug]})
    assert response.status_code == 404
    assert ApiKey.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/projects", {"name": "nul\u0000name"}),
        ("/projects/{slug}/runs", {"name": "r", "params": {"k\u0000": 1}}),
        ("/projects/{slug}/assessments", {"dev_source": "a\u0000b"}),
        ("/projects/{slug}/error-analyses", {"categories": {"x\u0000": 1}, "sample_size": 2}),
        # Half of an emoji (a lone surrogate): valid JSON, but no engine can store it.
        ("/projects", {"name": "ok", "problem_statement": "half \ud83d"}),
        ("/projects/{slug}/runs", {"name": "r", "params": {"k": "\ud83d"}}),
    ],
)
def test_nul_characters_are_refused_before_the_database_sees_them(api, project, path, body):
    # PostgreSQL text and jsonb cannot hold NUL: without this check, a 500 on the real pass.
    # No engine stores a lone surrogate: without the check, a 500 on both passes.
    before = Project.objects.count()
    response = api.post(path.format(slug=project.slug), body)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_text"
    assert Project.objects.count() == before
    assert project.runs.count() == 0


def test_nul_in_a_path_is_just_not_found(api, project):
    assert api.get("/projects/a%00b").status_code == 404
    run = project.runs.create(name="r")
    response = api.get(f"/runs/{run.pk}/metrics/a%00b")
    assert response.status_code == 422 and response.json()["code"] == "invalid_text"


def test_non_ascii_digits_in_a_path_are_not_an_id(api, project):
    # str.isdigit() says yes to these; int() refused "²" (a 500) and read "١" as 1.
    arabic = "".join(chr(0x660 + int(d)) for d in str(project.pk))
    for ref in (arabic, "²", f"{project.pk}²", "9" * 30):
        response = api.get(f"/projects/{ref}")
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), ref
        assert api.get(f"/projects/{ref}/runs").status_code == 404
    assert api.get(f"/projects/{project.pk}").json()["slug"] == project.slug


def test_a_slug_another_user_has_answers_like_a_free_one(api, other_user):
    from mlexec_app import services

    services.create_project(other_user, name="Secret plan", slug="secret-plan")
    services.create_project(other_user, name="Merger")
    taken = api.post("/projects", {"name": "Mine", "slug": "secret-plan"})
    free = api.post("/projects", {"name": "Mine too", "slug": "open-plan"})
    assert (taken.status_code, free.status_code) == (201, 201)
    assert taken.json()["slug"] == "secret-plan"
    # A slug derived from the name does not count other users' projects either.
    assert api.post("/projects", {"name": "Merger"}).json()["slug"] == "merger"
    # Each reads their own project by the shared slug.
    assert api.get("/projects/secret-plan").json()["name"] == "Mine"
    # Only your own projects make a slug taken.
    again = api.post("/projects", {"name": "Again", "slug": "secret-plan"})
    assert (again.status_code, again.json()["code"]) == (422, "slug_taken")
    assert Project.objects.filter(slug="secret-plan").count() == 2


def test_the_cli_asks_for_an_id_when_a_slug_is_shared(user, other_user):
    from mlexec_app import services
    from mlexec_app.exceptions import InvalidInput

    mine = services.create_project(user, name="Same")
    services.create_project(other_user, name="Same")
    with pytest.raises(InvalidInput) as info:
        services.find_project("same")
    assert info.value.code == "ambiguous_slug"
    assert services.find_project(str(mine.pk)) == mine
    assert services.find_project("same", Project.objects.filter(owner=user)) == mine


def test_a_body_over_django_s_limit_is_a_coded_413_that_writes_nothing(api):
    """It was Django's HTML "Bad Request (400)" page, with no code."""
    body = {"name": "p", "problem_statement": "x" * 3_000_000}
    answer = api.post("/projects", body)
    assert (answer.status_code, answer.json()["code"]) == (413, "body_too_large")
    assert not Project.objects.filter(name="p").exists()


def test_a_key_names_each_project_once_and_at_most_1000(api, project):
    """One lookup per reference: 100,000 repeats of one slug held a worker for 45 s."""
    made = api.post("/api-keys", {"name": "k", "projects": [project.slug] * 1000})
    assert made.status_code == 201 and made.json()["projects"] == [project.slug]
    refused = api.post("/api-keys", {"name": "k", "projects": [project.slug] * 1001})
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_input")
    assert ApiKey.objects.count() == 1
