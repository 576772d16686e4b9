"""The admin pages of issue #22: usage per agent and per day, feedback with filters, and each
export's dataset card (staff only, downloaded as plain text)."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from sessions_app import feedback, log, services
from sessions_app.models import Export, Run, Session

pytestmark = pytest.mark.django_db(transaction=True)
USAGE = "/admin/sessions_app/usagebyday/"
FEEDBACK = "/admin/sessions_app/feedback/"


def append(session, events):
    return log.append_sync(services.request(session.pk, events))


def run(session, run_id, agent, days_ago, **usage):
    events = [{"type": "RUN_STARTED", "run": run_id, "agent": agent}]
    if usage:
        events.append(
            {"type": "CUSTOM", "run": run_id, "data": {"name": "sessions.USAGE", "value": usage}}
        )
    append(session, events)
    # Noon of the site's day (the page groups by the current time zone's date): a UTC noon
    # falls on another local day for part of every day wherever TIME_ZONE is not UTC.
    started = timezone.localtime().replace(hour=12) - timedelta(days=days_ago)
    Run.objects.filter(session=session, run_id=run_id).update(started_at=started)


def usage_rows(page):
    """The usage table's rows as {(day, agent): [cells...]}, days as offsets from today."""
    html = page.content.decode()
    rows = {}
    for row in re.findall(r'<tr class="usage-row">(.*?)</tr>', html, re.S):
        cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]  # fmt: skip
        rows[(cells[0], cells[1])] = cells[2:]
    return rows


def day(days_ago):
    return (timezone.localdate() - timedelta(days=days_ago)).isoformat()


def test_usage_is_summed_per_agent_and_day_and_each_row_links_to_its_runs(admin_client, session):
    run(session, "r1", "helper", 0, input_tokens=100, output_tokens=20, cost=0.5,
        currency="USD", first_token_ms=300, latency_ms=900)  # fmt: skip
    run(session, "r2", "helper", 0, input_tokens=50, output_tokens=5, cost=0.25,
        currency="USD", first_token_ms=100, latency_ms=500)  # fmt: skip
    run(session, "r3", "helper", 0)  # reported nothing
    run(session, "r4", "helper", 1, input_tokens=7, output_tokens=1, cost=0.01, currency="USD")
    run(session, "r5", "planner", 0, input_tokens=1000, output_tokens=100, cost=2, currency="EUR")
    run(session, "old", "helper", 40, input_tokens=9, cost=9)  # outside the default 30 days

    page = admin_client.get(USAGE)
    assert page.status_code == 200
    rows = usage_rows(page)
    assert rows == {
        (day(0), "helper"): ["3", "2", "150", "25", "0.75 USD", "200 ms", "700 ms"],
        (day(0), "planner"): ["1", "1", "1,000", "100", "2 EUR", "-", "-"],
        (day(1), "helper"): ["1", "1", "7", "1", "0.01 USD", "-", "-"],
    }
    assert "(mixed currencies)" in page.content.decode()  # the total adds USD and EUR

    only = usage_rows(admin_client.get(USAGE, {"agent": "planner"}))
    assert list(only) == [(day(0), "planner")]
    old = usage_rows(admin_client.get(USAGE, {"since": day(45), "until": day(35)}))
    assert old == {(day(40), "helper"): ["1", "1", "9", "-", "9", "-", "-"]}

    link = re.search(r'<td><a href="([^"]+)">3</a></td>', page.content.decode()).group(1)
    runs = admin_client.get(link.replace("&amp;", "&")).content.decode()
    assert all(f">{r}<" in runs for r in ("r1", "r2", "r3")) and ">r4<" not in runs
    assert ">r5<" not in runs
    assert USAGE in admin_client.get("/admin/sessions_app/run/").content.decode()


def answered(owner, name, agent):
    session = Session.objects.create(name=name, owner=owner)
    append(session, [
        {"type": "TEXT_MESSAGE_START", "message": "u1", "data": {"role": "user"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": "u1", "data": {"delta": "Hi?"}},
        {"type": "TEXT_MESSAGE_END", "message": "u1"},
        {"type": "RUN_STARTED", "run": "r1", "agent": agent},
        {"type": "TEXT_MESSAGE_START", "message": "a1", "run": "r1", "data": {"role": "assistant"}},
        {"type": "TEXT_MESSAGE_CONTENT", "message": "a1", "run": "r1", "data": {"delta": "Hello."}},
        {"type": "TEXT_MESSAGE_END", "message": "a1", "run": "r1"},
        {"type": "RUN_FINISHED", "run": "r1"},
    ])  # fmt: skip
    return session


def rate(session, user, rating, comment=None, correction=None):
    log.append_sync(feedback.request(user, session.pk, "a1", rating, comment, correction))


def listed(client, **query):
    """(session, user, rating) of each row the feedback list shows."""
    html = client.get(FEEDBACK, query).content.decode()
    found = re.findall(
        r'<a href="/admin/sessions_app/session/\d+/change/">([^<]+)</a></td>'
        r'<td class="field-message_link">.*?</td><td class="field-comment_preview">',
        html,
        re.S,
    )
    users = re.findall(r'<td class="field-user">([^<]*)</td>', html)
    ratings = re.findall(r'<td class="field-rating">([^<]*)</td>', html)
    return sorted(zip(found, users, ratings, strict=True))


def test_feedback_is_listed_with_filters_and_links(admin_client, alice):
    one = answered(alice, "chat-one", "helper")
    two = answered(alice, "chat-two", "planner")
    rate(one, "ana", "down", comment="too short", correction="Hello, Ana.")
    rate(one, "bo", "down", comment="rude")
    rate(one, "bo", "up")  # replaces bo's down
    rate(two, "ana", "up")

    assert listed(admin_client) == [
        ("chat-one", "ana", "down"), ("chat-one", "bo", "up"), ("chat-two", "ana", "up")
    ]  # fmt: skip
    assert listed(admin_client, rating="down") == [("chat-one", "ana", "down")]
    assert listed(admin_client, agent="planner") == [("chat-two", "ana", "up")]
    assert listed(admin_client, correction="yes") == [("chat-one", "ana", "down")]
    assert listed(admin_client, comment="no") == [("chat-one", "bo", "up"), ("chat-two", "ana", "up")]  # fmt: skip
    assert listed(admin_client, session=two.pk) == [("chat-two", "ana", "up")]
    today = timezone.localdate()
    dated = {"rated_at__year": today.year, "rated_at__month": today.month}
    assert len(listed(admin_client, **dated)) == 3

    html = admin_client.get(FEEDBACK, {"session": two.pk}).content.decode()
    assert f'href="/admin/sessions_app/session/{two.pk}/change/"' in html
    message = f"/admin/sessions_app/entry/?session__id__exact={two.pk}&amp;run=r1"
    assert f'<a href="{message}">a1</a>' in html
    events = admin_client.get(message.replace("&amp;", "&")).content.decode()
    assert "TEXT_MESSAGE_START" in events and "Hello." in events


def test_an_exports_card_is_a_staff_page_and_a_plain_text_download(
    admin_client, alice, make_user, tmp_path
):
    rated = answered(alice, "chat-one", "helper")
    rate(rated, "ana", "up")
    answered(alice, "chat-two", "helper")
    call_command("sessions", "export-dataset", "--out", str(tmp_path / "data.jsonl"),
                 stderr=io.StringIO())  # fmt: skip
    export = Export.objects.get()
    assert export.conversations == 1  # the second is a duplicate
    page = admin_client.get(f"/admin/sessions_app/export/{export.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "<th>duplicates dropped</th><td>1</td>" in html
    assert "<th>ratings</th><td>up: 1</td>" in html
    assert "data.train.jsonl" in html
    assert (
        "/admin/sessions_app/export/" in admin_client.get("/admin/sessions_app/").content.decode()
    )

    download = admin_client.get(f"/admin/sessions_app/export/{export.pk}/card.md")
    assert download.status_code == 200
    assert download["Content-Type"] == "text/plain; charset=utf-8"
    assert download["Content-Disposition"].startswith("attachment;")
    assert download["X-Content-Type-Options"] == "nosniff"
    assert b"# Dataset card" in download.content

    urls = (f"/admin/sessions_app/export/{export.pk}/change/",
            f"/admin/sessions_app/export/{export.pk}/card.md")  # fmt: skip
    for url in urls:
        anonymous = Client().get(url)
        assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
        member = Client()
        member.force_login(alice)  # not staff
        assert "/admin/login/" in member.get(url)["Location"]
        clerk = make_user("clerk")
        clerk.is_staff = True
        clerk.save()
        staff = Client()
        staff.force_login(clerk)  # staff, but not allowed to view exports
        assert staff.get(url).status_code == 403
        clerk.user_permissions.add(Permission.objects.get(codename="view_export"))
        assert staff.get(url).status_code == 200
        clerk.delete()
