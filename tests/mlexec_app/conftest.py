"""Fixtures for mlexec_app tests through Django."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mlexec_app import keys, services

API = "/api/mlexec"


class Api:
    """A JSON client for the REST API, with a session or a bearer key."""

    def __init__(self, client: Client, key: str | None = None) -> None:
        self.client = client
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}

    def call(self, method: str, path: str, body=None, raw: str | None = None):
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        send = getattr(self.client, method)
        kwargs = {"content_type": "application/json"} if data is not None else {}
        if data is not None:
            kwargs["data"] = data
        return send(API + path, **kwargs, **self.headers)

    def get(self, path):
        return self.call("get", path)

    def post(self, path, body=None, raw=None):
        return self.call("post", path, body, raw)

    def patch(self, path, body=None):
        return self.call("patch", path, body)

    def put(self, path, body=None):
        return self.call("put", path, body)

    def delete(self, path):
        return self.call("delete", path)


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("ana", password="pw")


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user("bob", password="pw")


@pytest.fixture
def api(user):
    client = Client()
    client.force_login(user)
    return Api(client)


@pytest.fixture
def anonymous(db):
    return Api(Client())


@pytest.fixture
def project(user):
    return services.create_project(
        user,
        name="Cat detector",
        problem_statement="Find cats in user photos.",
        data_type="image",
        abstraction_layer="deep_learning",
        metric_name="error",
        target_value=0.02,
        human_level=0.01,
    )


@pytest.fixture
def sized_project(project):
    services.record_assessment(
        project, train_size=50_000, train_dev_size=10_000, dev_size=10_000, test_size=10_000
    )
    return project


@pytest.fixture
def key_for(user):
    def make(*projects, all_projects=False):
        _, raw = keys.create_api_key(user, "agent", projects=projects, all_projects=all_projects)
        return Api(Client(), raw)

    return make
