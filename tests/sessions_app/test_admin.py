"""The admin shows sessions with size and activity, and a session's events read-only."""

from __future__ import annotations

import json

import pytest

from sessions_app import log, services
from sessions_app.models import ApiKey, Entry, Run

pytestmark = pytest.mark.django_db


def publish(session, *events):
    return log.append_sync(services.request(session.pk, list(events)))


@pytest.fixture
def staff(admin_client, session):
    publish(
        session,
        {"type": "RUN_STARTED", "run": "r1"},
        {"type": "TEXT_MESSAGE_CONTENT", "run": "r1", "message": "m1", "data": {"delta": "Hello"}},
        {"type": "RUN_STARTED", "run": "r2"},
    )
    return admin_client


def test_session_list_shows_owner_entries_and_size(staff, session):
    page = staff.get("/admin/sessions_app/session/")
    assert page.status_code == 200
    row = page.content.decode()
    assert "chat-1" in row and "alice" in row
    assert f'href="/admin/sessions_app/entry/?session__id__exact={session.pk}"' in row


def test_a_sessions_events_in_offset_order_filtered_by_type_and_run(staff, session):
    base = f"/admin/sessions_app/entry/?session__id__exact={session.pk}"
    page = staff.get(base).content.decode()
    first, second, third = (page.index(f"0000000000000000_000000000000000{i}") for i in (1, 2, 3))
    assert first < second < third
    only_text = staff.get(base + "&type=TEXT_MESSAGE_CONTENT").content.decode()
    assert "Hello" in only_text and "0000000000000000_0000000000000001" not in only_text
    run_two = staff.get(base + "&run=r2").content.decode()
    assert "0000000000000000_0000000000000003" in run_two
    assert "0000000000000000_0000000000000002" not in run_two


def test_events_are_read_only(staff, session):
    entry = Entry.objects.get(session=session, seq=2)
    page = staff.get(f"/admin/sessions_app/entry/{entry.pk}/change/")
    assert page.status_code == 200
    assert "&quot;delta&quot;: &quot;Hello&quot;" in page.content.decode()
    before = bytes(entry.body)
    staff.post(f"/admin/sessions_app/entry/{entry.pk}/change/", {"type": "HACKED"})
    assert (
        staff.post(f"/admin/sessions_app/entry/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    entry.refresh_from_db()
    assert bytes(entry.body) == before and json.loads(before)["type"] == "TEXT_MESSAGE_CONTENT"


def test_editing_a_session_in_the_admin_keeps_its_offsets(staff, session):
    page = staff.post(
        f"/admin/sessions_app/session/{session.pk}/change/",
        {"name": "chat-1", "title": "Renamed", "content_type": "application/json", "owner": session.owner_id,
         "metadata": "{}", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"},
    )  # fmt: skip
    assert page.status_code == 302, page.content.decode()[:2000]
    session.refresh_from_db()
    assert (session.title, session.head) == ("Renamed", 3)


def test_runs_show_as_a_tree_and_an_admin_action_cancels_one(staff, session):
    publish(session, {"type": "RUN_STARTED", "run": "child", "data": {"parentRunId": "r1"}})
    page = staff.get("/admin/sessions_app/run/").content.decode()
    assert "\u2003\u2514 child" in page  # indented under its parent
    child = Run.objects.get(run_id="child")
    reply = staff.post(
        "/admin/sessions_app/run/", {"action": "cancel_runs", "_selected_action": [child.pk]}
    )
    assert reply.status_code == 302
    child.refresh_from_db()
    assert child.status == "cancelling"
    last = Entry.objects.filter(session=session).order_by("-seq").first()
    assert json.loads(bytes(last.body))["type"] == "CANCEL"


def test_an_api_key_made_in_the_admin_is_shown_once_and_stored_hashed(staff, alice, session):
    reply = staff.post(
        "/admin/sessions_app/apikey/add/",
        {"name": "ops bot", "user": alice.pk, "sessions": [session.pk]},
        follow=True,
    )
    text = reply.content.decode()
    assert "shown once" in text
    secret = text.split("store it now): ")[1].split("<")[0].strip()
    key = ApiKey.objects.get(name="ops bot")
    assert secret.startswith(f"dsk_{key.prefix}_") and secret not in key.hashed
    assert list(key.sessions.values_list("name", flat=True)) == ["chat-1"]
    assert ApiKey.objects.count() == 1


def test_a_key_made_in_the_admin_names_its_scope(staff, alice, session):
    url = "/admin/sessions_app/apikey/add/"
    vague = staff.post(url, {"name": "vague", "user": alice.pk})
    assert vague.status_code == 200 and "Tick" in vague.content.decode()
    assert ApiKey.objects.count() == 0
    staff.post(url, {"name": "all", "user": alice.pk, "all_sessions": "on"}, follow=True)
    key = ApiKey.objects.get(name="all")
    assert key.all_sessions and not key.sessions.exists()
