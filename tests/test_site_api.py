"""The demo site's NinjaAPI: its public schema costs one build, and answers reads only."""

from __future__ import annotations

from unittest import mock

import ninja.main
from django.test import Client


def test_the_schema_is_built_once_and_answers_reads_only():
    client = Client()
    first = client.get("/api/openapi.json")
    with mock.patch.object(ninja.main, "get_schema", wraps=ninja.main.get_schema) as build:
        again = client.get("/api/openapi.json")
        for method in ("post", "put", "patch", "delete"):
            refused = getattr(client, method)(
                "/api/openapi.json", data="{}", content_type="application/json"
            )
            assert refused.status_code == 405, method
        assert client.post("/api/docs").status_code == 405
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert "/api/sessions/" in first.json()["paths"]
    # Half a second of CPU a build: asking again, by any method, builds nothing more.
    assert build.call_count == 0
