"""`make run` serves the landing page, the admin and the API docs: check with a real server."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.servers import DaphneProcess, daphne_server, migrate, run_manage, site_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site")
    env = site_env(tmp, DEBUG="1")  # as `make run` does
    if env["DATABASE_URL"].startswith("postgres"):
        pytest.skip("the demo site runs on the embedded default; this pass is PostgreSQL")
    migrate(env)
    # The demo login; not the demo ML project, which these pages do not show (its baseline
    # and its queued diagnosis: tests/mlexec_app/test_demo_setup.py). Under the tests' inline
    # task backend its diagnosis trained here: 34 s of a 44 s set-up (load 4); with the
    # project queued, demo_setup took 11 s, without it 4.
    run_manage("demo_setup", "--no-ml-demo", env=env)
    with daphne_server(env) as base:
        yield base


def test_landing_page_links_both_apps(demo_site):
    page = httpx.get(demo_site + "/")
    assert page.status_code == 200
    for link in ('href="/sessions/"', 'href="/mlexec/"', 'href="/api/docs"', 'href="/admin/"'):
        assert link in page.text


def test_admin_login_page_and_its_stylesheet_are_served(demo_site):
    page = httpx.get(demo_site + "/admin/", follow_redirects=True)
    assert page.status_code == 200
    assert "Log in" in page.text
    css = httpx.get(demo_site + "/static/admin/css/base.css")
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]


def test_demo_login_works_in_the_admin(demo_site):
    with httpx.Client(base_url=demo_site, follow_redirects=True) as client:
        client.get("/admin/login/")
        token = client.cookies["csrftoken"]
        page = client.post(
            "/admin/login/?next=/admin/",
            data={"username": "demo", "password": "demo", "csrfmiddlewaretoken": token},
            headers={"Referer": demo_site + "/admin/login/"},
        )
    assert page.status_code == 200
    assert "Site administration" in page.text


def test_api_docs_and_schema_name_both_apps(demo_site):
    docs = httpx.get(demo_site + "/api/docs")
    assert docs.status_code == 200
    schema = httpx.get(demo_site + "/api/openapi.json").json()
    assert schema["info"]["title"] == "Django AI stack"


def test_signed_tokens_in_query_strings_stay_out_of_the_request_log(tmp_path):
    pytest.importorskip("uvicorn")
    env = site_env(tmp_path)
    if env["DATABASE_URL"].startswith("postgres"):
        pytest.skip("the first pass covers it: logging does not depend on the engines")
    migrate(env)
    secret = "s3cretTOKENvalue"
    with DaphneProcess(env, server="uvicorn") as server:  # uvicorn logs every request line
        for path in (f"/v1/stream/x?offset=-1&token={secret}", f"/api/docs?token={secret}&a=1"):
            httpx.get(server.base + path)
        server.stop()
        logged = server.log.read_text()
    assert "/api/docs?token=[redacted]&a=1" in logged, logged
    assert secret not in logged
