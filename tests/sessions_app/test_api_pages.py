"""The REST lists come in bounded pages: sessions, a session's runs, your API keys.

A session holds any number of runs (one a turn of its agent) and a user any number of keys;
a list that answered every row held a worker (and its memory) for as long as it took.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from sessions_app.models import ApiKey, Run, Session

pytestmark = pytest.mark.django_db
BASE = "/api/sessions"
PAGE = 100  # the default limit of runs and keys
ROWS = PAGE + 3


@pytest.fixture
def api(alice):
    client = Client()
    client.force_login(alice)
    return client


def _runs(session, alice):
    Run.objects.bulk_create(Run(session=session, run_id=f"r{i}") for i in range(ROWS))
    return "/chat-1/runs", "run_id"


def _keys(session, alice):
    ApiKey.objects.bulk_create(
        ApiKey(user=alice, name=f"k{i}", prefix=f"p{i}", hashed="x") for i in range(ROWS)
    )
    return "/keys/", "id"


@pytest.mark.parametrize("make", [_runs, _keys])
def test_a_long_list_comes_in_pages_that_add_up_to_all_of_it(api, session, alice, make):
    path, key = make(session, alice)
    first = api.get(BASE + path).json()
    assert (len(first["items"]), first["count"], first["next_offset"]) == (PAGE, ROWS, PAGE)
    rest = api.get(f"{BASE}{path}?offset={PAGE}").json()
    assert (len(rest["items"]), rest["next_offset"]) == (ROWS - PAGE, None)
    seen = [item[key] for item in first["items"] + rest["items"]]
    assert len(set(seen)) == ROWS  # no row twice, none left out
    small = api.get(f"{BASE}{path}?limit=2&offset=1").json()
    assert [item[key] for item in small["items"]] == seen[1:3] and small["next_offset"] == 3


def test_sessions_that_were_active_at_the_same_moment_page_without_repeats(api, alice):
    Session.objects.bulk_create(Session(name=f"s{i}", owner=alice) for i in range(5))
    Session.objects.update(last_activity=Session.objects.first().last_activity)
    pages = [api.get(f"{BASE}/?limit=2&offset={at}").json() for at in (0, 2, 4)]
    names = [s["name"] for page in pages for s in page["items"]]
    assert sorted(names) == [f"s{i}" for i in range(5)]
    assert [page["next_offset"] for page in pages] == [2, 4, None]


@pytest.mark.parametrize("path", ["/chat-1/runs", "/keys/", "/"])
@pytest.mark.parametrize("query", ["limit=0", "limit=501", "offset=-1", "offset=1000000001"])
def test_a_page_out_of_bounds_is_refused_with_a_code(api, session, path, query):
    answer = api.get(f"{BASE}{path}?{query}")
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_input")


def test_metadata_over_its_limit_is_refused_and_writes_nothing(api, alice, session):
    """Every list of sessions carries each one's metadata: at Django's body limit (2.5 MB)
    a page of 100 sessions took 823 MB of one worker, and a page may hold 500."""
    big = {"notes": "x" * (64 * 1024)}
    for answer in (
        api.post(f"{BASE}/", json.dumps({"metadata": big}), content_type="application/json"),
        api.patch(f"{BASE}/chat-1", json.dumps({"metadata": big}), content_type="application/json"),
    ):
        assert (answer.status_code, answer.json()["limit"]) == (413, "metadata_bytes")
    assert Session.objects.count() == 1 and Session.objects.get().metadata == {}
    fits = {"notes": "é" * 30_000}  # 60,000 bytes of UTF-8
    ok = api.patch(
        f"{BASE}/chat-1", json.dumps({"metadata": fits}), content_type="application/json"
    )
    assert ok.status_code == 200


def test_the_metadata_limit_is_a_setting(api, session, settings):
    settings.SESSIONS_APP = {"MAX_METADATA_BYTES": 10}
    body = json.dumps({"metadata": {"a": "12345"}})
    answer = api.patch(f"{BASE}/chat-1", body, content_type="application/json")
    assert answer.status_code == 413
