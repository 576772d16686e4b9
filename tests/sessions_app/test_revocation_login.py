"""A connection that the session cookie let in lasts as long as that login: a logout ends the
sockets and streams of that browser at once (other devices stay), a password change ends the
user's other logins, and a session deleted behind Django's back is found by the periodic
re-check."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from importlib import import_module

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.views import LogoutView, PasswordChangeView
from django.contrib.sessions.models import Session as LoginRow
from django.test import AsyncClient, override_settings
from django.urls import include, path

from sessions_app import credentials, log, services
from sessions_app.models import Entry
from sessions_app.routing import websocket_application
from tests.sessions_app.conftest import Client, text
from tests.sessions_app.test_revocation import closed_with, read_until_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]
urlpatterns = [
    path("logout/", LogoutView.as_view(next_page="/")),
    path("password/", PasswordChangeView.as_view(success_url="/")),
    path("sessions/", include("sessions_app.doors.urls")),
    path("v1/stream/", include("sessions_app.streams.urls")),
]

db = database_sync_to_async


async def logged_in(user) -> AsyncClient:
    """A browser that logged in: its own Django session, its own cookie."""
    browser = AsyncClient()
    await browser.aforce_login(user)
    return browser


def cookie(browser: AsyncClient) -> str:
    return browser.cookies[settings.SESSION_COOKIE_NAME].value


async def socket(browser: AsyncClient) -> Client:
    """The browser's WebSocket, authenticated by its session cookie alone."""
    header = f"{settings.SESSION_COOKIE_NAME}={cookie(browser)}".encode()
    communicator = WebsocketCommunicator(
        websocket_application(), "/ws/sessions/", headers=[(b"cookie", header)]
    )
    connected, _ = await communicator.connect(timeout=60)
    assert connected
    client = Client(communicator)
    hello = await client.recv_type("hello")
    assert hello["user"] == "alice"
    return client


async def publish(session, delta):
    await log.append(services.request(session.pk, [text(delta=delta)]))


@asynccontextmanager
async def laptop_and_phone(user):
    """Two browsers of ``user``, each logged in on its own, each with a socket following
    chat-1: the laptop, its socket, and the phone's socket."""
    laptop, phone = await logged_in(user), await logged_in(user)
    on_laptop, on_phone = await socket(laptop), await socket(phone)
    try:
        await on_laptop.subscribe("chat-1")
        await on_phone.subscribe("chat-1")
        yield laptop, on_laptop, on_phone
    finally:
        await on_phone.ws.disconnect()


async def test_a_logout_closes_that_browsers_socket_and_no_other(alice, session):
    async with laptop_and_phone(alice) as (laptop, on_laptop, on_phone):
        assert (await laptop.post("/logout/")).status_code == 302  # Django's own logout view
        frames, code = await closed_with(on_laptop)
        assert code == 4401
        assert [f["code"] for f in frames if f["type"] == "error"] == ["unauthenticated"]
        await publish(session, "for the phone")
        assert [e["data"]["delta"] for e in await on_phone.events(1)] == ["for the phone"]
        await on_laptop.send({"op": "publish", "id": 1, "session": "chat-1", "events": [text()]})
        await asyncio.sleep(0.3)  # a bound on a negative: time for a wrongly taken publish
    assert await db(Entry.objects.filter(session=session).count)() == 1


async def test_a_new_password_closes_the_users_other_logins(alice, session):
    laptop = await logged_in(alice)
    on_laptop = await socket(laptop)
    await on_laptop.subscribe("chat-1")

    def change_password():
        alice.set_password("a new one")
        alice.save()

    await db(change_password)()
    _, code = await closed_with(on_laptop)
    assert code == 4401


async def test_the_browser_that_changed_the_password_connects_again_with_its_new_cookie(
    alice, session
):
    laptop = await logged_in(alice)
    before = await socket(laptop)
    await before.subscribe("chat-1")
    changed = await laptop.post(
        "/password/",
        {"old_password": "pw", "new_password1": "a much longer one", "new_password2": "a much longer one"},
    )  # fmt: skip
    assert changed.status_code == 302  # Django's own view: the laptop stays logged in ...
    _, code = await closed_with(before)
    assert code == 4401  # ... under a new session key: the old socket's login is over
    after = await socket(laptop)  # what durable-sessions.js does on 4401: try again (backoff)
    try:
        await after.subscribe("chat-1")
        await publish(session, "still logged in")
        assert [e["data"]["delta"] for e in await after.events(1)] == ["still logged in"]
    finally:
        await after.ws.disconnect()


@override_settings(SESSIONS_APP={"ACCESS_RECHECK_SECONDS": 0.2})
async def test_a_login_deleted_without_a_signal_is_found_by_the_periodic_check(alice, session):
    async with laptop_and_phone(alice) as (laptop, on_laptop, on_phone):
        # e.g. `clearsessions`, or an admin deleting the row: no logout, no signal.
        await db(LoginRow.objects.filter(session_key=cookie(laptop)).delete)()
        _, code = await closed_with(on_laptop, timeout=3)
        assert code == 4401
        await publish(session, "still here")
        assert [e["data"]["delta"] for e in await on_phone.events(1)] == ["still here"]


async def test_a_logout_ends_the_browsers_agui_stream(alice, session, long_poll_waiting):
    await log.append(
        services.request(session.pk, [{"type": "RUN_STARTED", "run": "r1", "agent": "writer"}])
    )
    laptop = await logged_in(alice)
    response = await laptop.get("/sessions/agui/chat-1/connect?protocolVersion=1")
    assert response.status_code == 200
    reading = asyncio.ensure_future(read_until_end(response))
    await asyncio.wait_for(long_poll_waiting.wait(), 10)  # its groups joined: it hears it
    await laptop.alogout()
    body = await reading  # well before the stream's own end
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "RUN_ERROR" and events[-1]["code"] == "not_found"


@override_settings(SESSIONS_APP={"ANONYMOUS_STREAM_PREFIX": None})
async def test_a_logout_ends_the_browsers_durable_streams_sse_reader(
    alice, session, long_poll_waiting
):
    laptop = await logged_in(alice)
    response = await laptop.get("/v1/stream/chat-1?offset=-1&live=sse")
    assert response.status_code == 200
    reading = asyncio.ensure_future(read_until_end(response))
    await asyncio.wait_for(long_poll_waiting.wait(), 10)
    await laptop.alogout()
    body = await reading  # ends well before SSE_MAX_SECONDS
    await publish(session, "after logout")
    assert "after logout" not in body


# --- the rule, without a connection -------------------------------------------------------------


@pytest.mark.parametrize(
    "engine",
    ["django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cache"],
)
def test_which_logins_still_hold(engine, alice, bob, client, settings):
    settings.SESSION_ENGINE = engine
    client.force_login(alice)
    kept = client.cookies[settings.SESSION_COOKIE_NAME].value
    other = type(client)()
    other.force_login(alice)
    gone = other.cookies[settings.SESSION_COOKIE_NAME].value
    other.logout()
    assert credentials.logins_held([(kept, alice), (gone, alice), (kept, bob)]) == {kept}
    assert credentials.logins_held([("no-such-session", alice)]) == set()
    alice.set_password("changed")
    alice.save()
    assert credentials.logins_held([(kept, alice)]) == set()


def test_logins_are_judged_as_django_loads_them_with_the_cached_db_engine(alice, client, settings):
    # cached_db trusts its cache before its rows: a login whose row went (an admin deleted it)
    # still lets the browser in while the cache has it, so it must not end its sockets (they
    # would reconnect and be closed again at every check).
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    client.force_login(alice)
    kept = client.cookies[settings.SESSION_COOKIE_NAME].value
    LoginRow.objects.filter(session_key=kept).delete()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    assert SESSION_KEY in store(kept).load()  # what Django reads of the cookie: still logged in
    assert credentials.logins_held([(kept, alice)]) == {kept}
    client.logout()
    assert credentials.logins_held([(kept, alice)]) == set()


def test_a_login_signed_with_a_fallback_secret_still_holds(alice, client, settings):
    client.force_login(alice)
    kept = client.cookies[settings.SESSION_COOKIE_NAME].value
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a rotated secret key " * 3
    assert credentials.logins_held([(kept, alice)]) == {kept}
    # Django's own check would have moved the browser to a new session key: this one writes
    # nothing, so the cookie the browser holds still works.
    assert LoginRow.objects.filter(session_key=kept).exists()
    settings.SECRET_KEY_FALLBACKS = []
    assert credentials.logins_held([(kept, alice)]) == set()
