"""Every door keeps runs in step with the log: an append through Durable Streams to a run that
a cancel ended is refused exactly as over WebSocket or REST."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from sessions_app import log, services
from sessions_app.access import mint_token
from sessions_app.models import Entry, Run

pytestmark = pytest.mark.django_db(transaction=True)


def test_durable_streams_appends_follow_the_run_lifecycle(alice, session):
    log.append_sync(services.request(session.pk, [{"type": "RUN_STARTED", "run": "r1"}]))
    client = Client(headers={"Authorization": f"Bearer {mint_token(alice)}"})
    delta = {"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "message": "m1", "data": {"delta": "hi"}}
    accepted = client.post("/v1/stream/chat-1", json.dumps(delta), content_type="application/json")
    assert accepted.status_code in (200, 204)
    cancel = {"type": "RUN_FINISHED", "run": "r1", "data": {"outcome": "cancelled"}}
    assert client.post(
        "/v1/stream/chat-1", json.dumps(cancel), content_type="application/json"
    ).status_code in (200, 204)
    assert Run.objects.get(run_id="r1").status == "cancelled"
    refused = client.post("/v1/stream/chat-1", json.dumps(delta), content_type="application/json")
    assert refused.status_code == 409
    assert Entry.objects.filter(session=session).count() == 3
