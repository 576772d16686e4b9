"""The Durable Streams protocol state a session keeps in its metadata (the last Stream-Seq,
the Stream-Expires-At text) is the server's: a REST PATCH of metadata keeps it, no caller
writes it, and no REST answer shows it."""

from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.test import Client, RequestFactory

from sessions_app.access import mint_token
from sessions_app.models import PROTOCOL_STATE_KEY, Session

pytestmark = pytest.mark.django_db(transaction=True)
EVENT = json.dumps([{"type": "CUSTOM", "data": {"name": "x"}}])


@pytest.fixture
def owner(alice):
    client = Client()
    client.force_login(alice)
    return client


def rest(client, method, path, body):
    return getattr(client, method)(
        "/api/sessions" + path, json.dumps(body), content_type="application/json"
    )


def ds_append(client, user, seq):
    token = {"HTTP_AUTHORIZATION": f"Bearer {mint_token(user)}"}
    return client.post(
        "/v1/stream/chat-1", EVENT, content_type="application/json", HTTP_STREAM_SEQ=seq, **token
    )


def test_a_metadata_patch_keeps_the_last_stream_seq(owner, alice, session):
    assert ds_append(owner, alice, "b").status_code == 204
    patched = rest(owner, "patch", "/chat-1", {"metadata": {"topic": "travel"}})
    assert patched.status_code == 200 and patched.json()["metadata"] == {"topic": "travel"}
    lower = ds_append(owner, alice, "a")
    assert (lower.status_code, lower.json()["code"]) == (409, "conflict")  # was 204: taken again
    assert ds_append(owner, alice, "c").status_code == 204


def test_a_title_patch_does_not_write_back_a_stale_metadata(owner, alice, session):
    stale = Session.objects.get(pk=session.pk)
    assert ds_append(owner, alice, "b").status_code == 204
    stale.title = "renamed in the admin"
    stale.save()
    assert Session.objects.get(pk=session.pk).metadata[PROTOCOL_STATE_KEY]["seq"] == "b"


def test_the_admin_s_save_keeps_the_state_written_since_it_read_the_row(
    owner, alice, session, django_user_model
):
    form_copy = Session.objects.get(pk=session.pk)
    assert ds_append(owner, alice, "b").status_code == 204
    form_copy.metadata = {"note": "edited"}
    root = django_user_model.objects.create_superuser("root", password="pw")
    request = RequestFactory().post("/")
    request.user = root
    admin.site._registry[Session].save_model(request, form_copy, None, change=True)
    stored = Session.objects.get(pk=session.pk).metadata
    assert stored == {"note": "edited", PROTOCOL_STATE_KEY: {"seq": "b"}}


@pytest.mark.parametrize(
    "state", [{"seq": "zzzz"}, {"expires_at": "x\r\nSet-Cookie: a=b"}, None, "anything"]
)
def test_no_caller_writes_the_protocol_state(owner, alice, session, state):
    """A forged last Stream-Seq refused every later append (409), and a forged expiry with a
    line break answered 500 to every HEAD of the stream (a header Django will not send)."""
    forged = {"metadata": {PROTOCOL_STATE_KEY: state, "topic": "x"}}
    for answer in (rest(owner, "patch", "/chat-1", forged), rest(owner, "post", "/", forged)):
        assert (answer.status_code, answer.json()["code"]) == (400, "bad_request")
    assert Session.objects.count() == 1
    assert PROTOCOL_STATE_KEY not in Session.objects.get(pk=session.pk).metadata
    assert ds_append(owner, alice, "a").status_code == 204
    token = {"HTTP_AUTHORIZATION": f"Bearer {mint_token(alice)}"}
    assert owner.head("/v1/stream/chat-1?offset=-1", **token).status_code == 200


def test_no_rest_answer_shows_the_protocol_state(owner, alice, session):
    assert ds_append(owner, alice, "b").status_code == 204
    assert owner.get("/api/sessions/chat-1").json()["metadata"] == {}
    assert owner.get("/api/sessions/").json()["items"][0]["metadata"] == {}
