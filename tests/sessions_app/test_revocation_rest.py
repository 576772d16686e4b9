"""Revocation reaches the REST long-poll (``GET /{name}/events/wait``) as it reaches the other
doors' long-lived reads: a poll whose key is revoked, whose member is removed, whose user is
deactivated or whose browser logs out while it waits answers 404 and carries none of what was
written after."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient, override_settings

from sessions_app import keys, log, services
from sessions_app.models import ApiKey, Membership
from tests.sessions_app.conftest import add_member, text

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async
BASE = "/api/sessions"


async def _poll(headers, long_poll_waiting, client=None):
    client = client or AsyncClient()
    polling = asyncio.ensure_future(
        client.get(f"{BASE}/chat-1/events/wait?timeout=20", headers=headers)
    )
    await asyncio.wait_for(long_poll_waiting.wait(), 10)  # it read, found nothing, and waits
    return polling


async def _written_after(session):
    await log.append(services.request(session.pk, [text(delta="secret after")]))


async def test_a_long_poll_whose_key_is_revoked_answers_404_without_what_came_after(
    alice, session, long_poll_waiting
):
    key, secret = await db(keys.create_key)(alice, "agent", all_sessions=True)
    polling = await _poll({"Authorization": f"Bearer {secret}"}, long_poll_waiting)
    await db(keys.revoke)(key)
    await _written_after(session)
    response = await asyncio.wait_for(polling, 10)
    assert response.status_code == 404 and b"secret after" not in response.content


async def test_a_long_poll_of_a_removed_member_answers_404(alice, bob, session, long_poll_waiting):
    await db(add_member)(session, bob)
    client = AsyncClient()
    await db(client.force_login)(bob)
    polling = await _poll({}, long_poll_waiting, client)
    await db(Membership.objects.filter(user=bob).delete)()
    await _written_after(session)
    response = await asyncio.wait_for(polling, 10)
    assert response.status_code == 404 and b"secret after" not in response.content


@override_settings(SESSIONS_APP={"ACCESS_RECHECK_SECONDS": 0.2})
async def test_a_revocation_no_signal_announces_ends_the_poll_by_the_periodic_check(
    alice, session, long_poll_waiting
):
    key, secret = await db(keys.create_key)(alice, "agent", all_sessions=True)
    polling = await _poll({"Authorization": f"Bearer {secret}"}, long_poll_waiting)
    # A queryset update sends no signal: only the periodic re-check can notice it.
    await db(ApiKey.objects.filter(pk=key.pk).update)(revoked_at="2020-01-01T00:00:00Z")
    response = await asyncio.wait_for(polling, 10)  # well before its 20 s timeout
    assert response.status_code == 404


async def test_a_poll_that_keeps_its_access_still_gets_what_comes(
    alice, session, long_poll_waiting
):
    key, secret = await db(keys.create_key)(alice, "agent", all_sessions=True)
    polling = await _poll({"Authorization": f"Bearer {secret}"}, long_poll_waiting)
    await _written_after(session)
    response = await asyncio.wait_for(polling, 10)
    assert [e["data"]["delta"] for e in response.json()["events"]] == ["secret after"]


async def test_a_long_poll_let_in_by_the_cookie_answers_404_once_that_browser_logs_out(
    alice, session, long_poll_waiting
):
    laptop, phone = AsyncClient(), AsyncClient()
    await laptop.aforce_login(alice)
    await phone.aforce_login(alice)
    on_laptop = await _poll({}, long_poll_waiting, laptop)
    long_poll_waiting.clear()
    on_phone = await _poll({}, long_poll_waiting, phone)
    await laptop.alogout()
    await _written_after(session)
    response = await asyncio.wait_for(on_laptop, 10)
    assert response.status_code == 404 and b"secret after" not in response.content
    response = await asyncio.wait_for(on_phone, 10)  # the phone's login is another one
    assert response.status_code == 200 and b"secret after" in response.content
