"""Ids and text a database cannot hold are refused with a 4xx and a code, on every engine.

A number past 64 bits overflows inside the query (SQLite: OverflowError, PostgreSQL: bigint out
of range) and a NUL cannot be stored in PostgreSQL's text: both were 500s from the workers' REST
door (found by the OpenAPI fuzz) and from revoking a key.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from sessions_app import keys

pytestmark = pytest.mark.django_db(transaction=True)

HUGE = 2**63  # one past the largest 64-bit id


@pytest.fixture
def worker(alice):
    secret = keys.create_key(alice, "worker", all_sessions=True)[1]
    return Client(headers={"Authorization": f"Bearer {secret}"})


def post(client: Client, path: str, body: dict) -> tuple[int, dict]:
    answer = client.post(path, data=json.dumps(body), content_type="application/json")
    return answer.status_code, answer.json()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/sessions/turns/renew", {"worker": "w1", "turns": [HUGE]}),
        ("/api/sessions/turns/renew", {"worker": "w1", "turns": [-HUGE]}),
        ("/api/sessions/turns/release", {"worker": "w1", "turn": HUGE}),
        ("/api/sessions/turns/release", {"worker": "w\x00", "turn": 1}),
        ("/api/sessions/turns/renew", {"worker": "w\x00", "turns": [1]}),
        ("/api/sessions/turns/claim", {"worker": "w\x00", "agents": ["a"]}),
        ("/api/sessions/turns/claim", {"worker": "w1", "agents": ["a\x00"]}),
    ],
)
def test_the_worker_door_refuses_what_no_database_holds(worker, path, body):
    status, answer = post(worker, path, body)
    assert 400 <= status < 500, (status, answer)
    assert answer["code"] in ("bad_request", "invalid_input")


def test_a_worker_s_ordinary_renew_still_answers(worker):
    status, answer = post(worker, "/api/sessions/turns/renew", {"worker": "w1", "turns": [1]})
    assert (status, answer) == (200, {"held": []})


def test_revoking_a_key_past_64_bits_is_a_404_not_a_500(alice):
    client = Client()
    client.force_login(alice)
    answer = client.delete(f"/api/sessions/keys/{HUGE}")
    assert answer.status_code in (404, 422), answer.content
    assert answer.json()["code"]
