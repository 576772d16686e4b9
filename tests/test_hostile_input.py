"""Every URL of the demo site, sent what an attacker sends: no answer is a 5xx, nothing is written.

The walk is over the site's URL resolver, not a list written by hand: a view added later is
walked too, and a URL pattern this file does not know how to fill in fails the test. Each
pattern is called with every method, under three credentials (a sessions_app key, an mlexec
key, a logged-in cookie with its CSRF token), with bodies that have reached a 500 before:
NaN, nesting deeper than Python's recursion limit, a body over Django's upload limit, a lone
surrogate; and with path parameters made of non-ASCII digits. The admin is Django's own and is
left out.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.db import connections
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

pytest.importorskip("mlexec_app")  # the walk covers the demo site, which installs both apps

from mlexec_app import keys as ml_keys  # noqa: E402
from mlexec_app import services as ml_services  # noqa: E402
from sessions_app import dbexec, keys, log, services  # noqa: E402
from sessions_app.models import Session  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
HOSTILE_BODIES = {
    "NaN": '{"metadata": {"x": NaN}, "params": {"lr": NaN}, "events": [{"type": "CUSTOM", "data": NaN}]}',
    "deep nesting": "[" * 100_000,
    "deep objects": '{"a":' * 50_000,
    # Over Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), where a 10 MB body used to be a 500.
    "3 MB": '{"title": "' + "x" * 3_000_000 + '"}',
    "lone surrogate": '{"title": "\\ud800", "text": "\\udfff", "name": "\\ud800"}',
}
# What each path parameter is filled with: resources that exist, so validation is reached.
EXISTING = {
    "name": "chat-1",
    "thread": "chat-1",
    "chat_id": "chat-1",
    "run_id": "r1",
    "username": "alice",
    "key_id": "1",
    "ref": "cat-detector",
    "slug": "cat-detector",
    "intervention_id": "1",
    "job_id": "1",
    "key": "train",
    "index": "0",
}
NON_ASCII_DIGITS = "١٢٣"  # Arabic-Indic digits: str.isdigit() is true, int() parses them


def site_patterns() -> list[str]:
    """Every URL pattern of the site outside the admin, as its route text."""
    found: list[str] = []

    def walk(resolver: URLResolver, prefix: str) -> None:
        for entry in resolver.url_patterns:
            route = prefix + str(entry.pattern)
            if route.startswith("admin/"):
                continue
            if isinstance(entry, URLResolver):
                walk(entry, route)
            elif isinstance(entry, URLPattern):
                found.append(route)

    walk(get_resolver(), "")
    return sorted(set(found))


def fill(route: str, value: str | None = None) -> str:
    """The route with each parameter replaced by an existing resource (or ``value``)."""
    import re

    def one(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[-1]
        if name not in EXISTING:
            raise AssertionError(f"tests/test_hostile_input.py cannot fill <{name}> in {route}")
        return value if value is not None else EXISTING[name]

    path = re.sub(r"<([^>]+)>", one, route)
    return "/" + path.replace("^", "").replace("$", "")


@pytest.fixture(autouse=True)
def _short_waits(settings):
    settings.SESSIONS_APP = {
        **getattr(settings, "SESSIONS_APP", {}),
        "REST_LONG_POLL_MAX": 0.2,
        "LONG_POLL_TIMEOUT": 0.2,
        "SSE_MAX_SECONDS": 0.2,
        "DOORS_RUN_START_TIMEOUT": 0.2,
        "ANONYMOUS_STREAM_PREFIX": "anon-",
    }
    yield
    dbexec.shutdown()
    asyncio.run(sync_to_async(connections.close_all)())


@pytest.fixture
def world(django_user_model):
    alice = django_user_model.objects.create_user("alice", password="pw")
    session = Session.objects.create(name="chat-1", owner=alice, title="Chat")
    log.append_sync(services.request(session.pk, [{"type": "RUN_STARTED", "run": "r1"}]))
    ml_services.create_project(
        alice, name="Cat detector", problem_statement="p", data_type="image",
        abstraction_layer="deep_learning", metric_name="error", target_value=0.02,
    )  # fmt: skip
    cookie = Client(enforce_csrf_checks=True, raise_request_exception=False)
    cookie.force_login(alice)
    cookie.get("/chat/")  # sets the CSRF cookie
    csrf = cookie.cookies["csrftoken"].value if "csrftoken" in cookie.cookies else ""
    return {
        "sessions key": {
            "HTTP_AUTHORIZATION": f"Bearer {keys.create_key(alice, 'k', all_sessions=True)[1]}"
        },
        "mlexec key": {
            "HTTP_AUTHORIZATION": f"Bearer {ml_keys.create_api_key(alice, 'k', all_projects=True)[1]}"
        },
        "cookie": {"HTTP_X_CSRFTOKEN": csrf, "client": cookie},
    }


def rows() -> dict[str, int]:
    return {
        model._meta.label: model._default_manager.count()
        for name in ("sessions_app", "mlexec_app")
        for model in apps.get_app_config(name).get_models()
    }


def call(credential: dict, method: str, path: str, body: str | None) -> int:
    extra = dict(credential)
    client = extra.pop("client", None) or Client(raise_request_exception=False)
    kwargs = {"content_type": "application/json", "data": body} if body is not None else {}
    response = client.generic(method, path, **kwargs, **extra)
    if response.streaming:
        response.close()
    return response.status_code


def test_every_url_is_walked():
    """The walk reaches every door: a new view cannot be forgotten by this file."""
    routes = site_patterns()
    for must in ("api/sessions/", "v1/stream/", "sessions/agui/", "sessions/aisdk/", "metrics"):
        assert any(r.startswith(must) for r in routes), must
    for route in routes:
        fill(route)  # raises on a parameter this file cannot fill


@pytest.mark.parametrize("body", sorted(HOSTILE_BODIES))
def test_hostile_bodies_get_a_4xx_and_write_nothing(world, body):
    failures = []
    for route in site_patterns():
        path = fill(route)
        # Rows are counted around each route's requests (counting around every request costs
        # ~30 queries each): when only refusals came back, nothing may have changed.
        before, statuses = rows(), []
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for who, credential in world.items():
                status = call(credential, method, path, HOSTILE_BODIES[body])
                statuses.append(status)
                if status >= 500:
                    failures.append(f"{method} {path} as {who}: {status}")
        if all(status >= 400 for status in statuses) and rows() != before:
            failures.append(f"{path}: refused every request but wrote rows")
    assert not failures, "\n".join(failures)


def test_non_ascii_digits_in_paths_and_bearers_get_a_4xx(world):
    failures = []
    for route in site_patterns():
        if "<" not in route:
            continue
        path = fill(route, NON_ASCII_DIGITS)
        for method in METHODS:
            for who, credential in world.items():
                status = call(credential, method, path, None)
                if status >= 500:
                    failures.append(f"{method} {path} as {who}: {status}")
    for route in site_patterns():
        status = call(
            {"HTTP_AUTHORIZATION": "Bearer " + NON_ASCII_DIGITS + "é"}, "GET", fill(route), None
        )
        if status >= 500:
            failures.append(f"GET {fill(route)} with a non-ASCII bearer: {status}")
    assert not failures, "\n".join(failures)
