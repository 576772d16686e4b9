"""The Durable Streams door under hostile or careless callers, on both of its paths.

Every test runs twice: through the site's URLconf and middleware (Django's test client) and
through the fast path (``with_streams``, which skips the middleware), because a check that
only the middleware makes is missing on the fast path.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient, override_settings
from django.urls import include, path

from sessions_app.access import mint_token
from sessions_app.models import Entry, Session
from sessions_app.streams.asgi import with_streams
from tests.sessions_app.conftest import add_member, text

urlpatterns = [path("v1/stream/", include("sessions_app.streams.urls"))]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

db = database_sync_to_async
URL = "/v1/stream/"
JSON = "application/json"
PUBLIC = {"ANONYMOUS_STREAM_PREFIX": "public/", "LONG_POLL_TIMEOUT": 0.2, "SSE_MAX_SECONDS": 0.5}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]

    def get(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def json(self) -> dict:
        return json.loads(self.body)


async def _not_the_door(scope, receive, send):
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@dataclass
class Door:
    """One path to the door: ``django`` (URLconf and middleware) or ``fast`` (``with_streams``)."""

    kind: str
    cookies: dict[str, str] = field(default_factory=dict)
    scheme: str = "http"

    async def login(self, user, *, csrf: bool = False) -> dict[str, str]:
        """Log ``user`` in with the session cookie; the headers a CSRF-checked write needs."""
        client = AsyncClient()
        await client.aforce_login(user)
        self.cookies["sessionid"] = client.cookies["sessionid"].value
        if not csrf:
            return {}
        self.cookies["csrftoken"] = "k" * 32
        return {"X-CSRFToken": "k" * 32}

    async def call(
        self, method: str, url: str, body: bytes | str = b"", headers: dict | None = None
    ) -> Answer:
        """One request, as an ASGI server would hand it over (streamed answers collected)."""
        body = body.encode() if isinstance(body, str) else body
        raw = [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
        if not any(name == b"host" for name, _ in raw):
            raw.append((b"host", b"testserver"))
        if self.cookies:
            cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            raw.append((b"cookie", cookie.encode()))
        path, _, query = url.partition("?")
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": method,
            "scheme": self.scheme,
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": raw,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 443 if self.scheme == "https" else 80),
        }
        # django: the site's whole stack (middleware, URLconf); fast: with_streams.
        app = ASGIHandler() if self.kind == "django" else with_streams(_not_the_door)
        communicator = ApplicationCommunicator(app, scope)
        await communicator.send_input({"type": "http.request", "body": body})
        start = await communicator.receive_output(10)
        chunks = []
        while True:  # streamed answers (SSE) come in several messages
            message = await communicator.receive_output(10)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await communicator.wait(10)
        answer = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        return Answer(start["status"], answer, b"".join(chunks))


@pytest.fixture(params=["django", "fast"])
def door(request) -> Door:
    return Door(request.param)


async def bearer(user, sessions=None) -> dict[str, str]:
    return {"Authorization": f"Bearer {await db(mint_token)(user, sessions)}"}


async def stored(name: str) -> list[bytes]:
    rows = db(list)(
        Entry.objects.filter(session__name=name).order_by("seq").values_list("body", flat=True)
    )
    return [bytes(body) for body in await rows]


async def exists(name: str) -> bool:
    return await db(Session.objects.filter(name=name).exists)()


# --- HEAD answers with the ETag a whole-stream GET gives ----------------------------------------


@override_settings(SESSIONS_APP=PUBLIC)
async def test_head_sends_the_etag_a_get_of_the_whole_stream_sends(door):
    assert (
        await door.call("PUT", URL + "public/e", "a", {"Content-Type": "text/plain"})
    ).status == 201
    head = await door.call("HEAD", URL + "public/e")
    get = await door.call("GET", URL + "public/e?offset=-1")
    assert head.status == 200 and head.get("ETag") and head["ETag"] == get["ETag"]
    assert head["ETag"] == (await door.call("GET", URL + "public/e"))["ETag"]
    await door.call("POST", URL + "public/e", "b", {"Content-Type": "text/plain"})
    appended = await door.call("HEAD", URL + "public/e")
    assert appended["ETag"] != head["ETag"]
    assert appended["ETag"] == (await door.call("GET", URL + "public/e?offset=-1"))["ETag"]
    await door.call("POST", URL + "public/e", "", {"Stream-Closed": "true"})
    closed = await door.call("HEAD", URL + "public/e")
    assert closed["ETag"] not in (head["ETag"], appended["ETag"])
    assert closed["ETag"] == (await door.call("GET", URL + "public/e?offset=-1"))["ETag"]


# --- Stream-Expires-At and Stream-TTL at the edges of the datetime range ------------------------


@override_settings(SESSIONS_APP=PUBLIC)
@pytest.mark.parametrize(
    "expires",
    [
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59+14:00",
    ],
)
async def test_an_expiry_at_the_edge_of_the_calendar_is_refused_and_writes_nothing(door, expires):
    answer = await door.call(
        "PUT",
        URL + "public/edge",
        "x",
        {"Content-Type": "text/plain", "Stream-Expires-At": expires},
    )
    assert answer.status == 400 and answer.json["code"] == "bad_request"
    assert "Stream-Expires-At" in answer.json["message"]
    assert not await exists("public/edge")


async def test_the_largest_ttl_an_owned_stream_may_have_is_accepted(door, alice):
    answer = await door.call(
        "PUT",
        URL + "mine",
        b"[]",
        {"Content-Type": JSON, "Stream-TTL": str(2**31 - 1), **await bearer(alice)},
    )
    assert answer.status == 201
    assert (await door.call("HEAD", URL + "mine", headers=await bearer(alice)))[
        "Stream-TTL"
    ] == str(2**31 - 1)


# --- a refused request writes nothing --------------------------------------------------------


@override_settings(SESSIONS_APP=PUBLIC, ALLOWED_HOSTS=["testserver"])
async def test_a_host_the_site_does_not_serve_is_refused_before_anything_is_written(door, alice):
    evil = {"Host": "evil.example", "Content-Type": "text/plain"}
    answer = await door.call("PUT", URL + "public/h", "planted", evil)
    assert answer.status == 400
    assert not await exists("public/h")
    owned = await door.call("PUT", URL + "owned", b"[]", {**evil, **await bearer(alice)})
    assert owned.status == 400 and not await exists("owned")
    assert (
        await door.call("PUT", URL + "public/h", "ok", {"Content-Type": "text/plain"})
    ).status == 201
    appended = await door.call("POST", URL + "public/h", "more", evil)
    deleted = await door.call("DELETE", URL + "public/h", headers={"Host": "evil.example"})
    assert [appended.status, deleted.status] == [400, 400]
    assert await stored("public/h") == [b"ok"]


# --- CSRF follows the credentials, not the stream's name -----------------------------------------


@override_settings(SESSIONS_APP=PUBLIC)
async def test_a_cookie_write_needs_the_csrf_token_whatever_the_streams_name(door, alice):
    await db(Session.objects.create)(name="public/mine", owner=alice, content_type=JSON)
    assert (
        await door.call("PUT", URL + "public/open", "a", {"Content-Type": "text/plain"})
    ).status == 201
    await door.login(alice)
    event = json.dumps(text(delta="x"))
    for name, body, content_type in (
        ("public/mine", event, JSON),
        ("public/open", "b", "text/plain"),
    ):
        appended = await door.call("POST", URL + name, body, {"Content-Type": content_type})
        deleted = await door.call("DELETE", URL + name)
        assert [appended.status, deleted.status] == [401, 401], name
        assert "CSRF" in appended.json["message"]
    assert await stored("public/mine") == [] and await stored("public/open") == [b"a"]
    csrf = await door.login(alice, csrf=True)
    appended = await door.call("POST", URL + "public/mine", event, {"Content-Type": JSON, **csrf})
    assert appended.status == 204 and len(await stored("public/mine")) == 1
    assert (await door.call("DELETE", URL + "public/mine", headers=csrf)).status == 204
    assert not await exists("public/mine")


# --- a name someone else uses, or the site keeps, answers like one the caller cannot have ------


async def put_json(door: Door, name: str, headers: dict | None = None) -> Answer:
    return await door.call("PUT", URL + name, b"[]", {"Content-Type": JSON, **(headers or {})})


async def test_a_name_another_user_has_answers_like_a_reserved_name(door, alice, bob, session):
    reserved = {"RESERVED_NAME_PREFIXES": ("job-",)}
    with override_settings(SESSIONS_APP=reserved):
        theirs = await put_json(door, "chat-1", await bearer(bob))
        kept = await put_json(door, "job-1", await bearer(bob))
        kept_by_owner = await put_json(door, "job-2", await bearer(alice))
    assert theirs.status == kept.status == kept_by_owner.status == 409
    assert theirs.body == kept.body == kept_by_owner.body
    assert theirs.json["code"] == "conflict"
    assert not await exists("job-1") and not await exists("job-2")
    owner = await db(lambda: Session.objects.get(name="chat-1").owner_id)()
    assert owner == alice.pk and await stored("chat-1") == []
    # Callers who could not create a free name either get the answer a free name gets.
    for headers in ({}, await bearer(bob, ["elsewhere"])):
        taken, free = await put_json(door, "chat-1", headers), await put_json(door, "free", headers)
        assert (taken.status, taken.body) == (free.status, free.body)
        assert taken.status in (401, 404)
    assert not await exists("free")


@override_settings(
    SESSIONS_APP={"ANONYMOUS_STREAM_PREFIX": "", "RESERVED_NAME_PREFIXES": ("job-",)}
)
async def test_anonymous_streams_cannot_take_a_reserved_name(door):
    refused = await door.call("PUT", URL + "job-7", "x", {"Content-Type": "text/plain"})
    assert refused.status == 409 and refused.json["code"] == "conflict"
    assert not await exists("job-7")
    assert (await door.call("PUT", URL + "jobs", "x", {"Content-Type": "text/plain"})).status == 201


# --- a stream's body never runs as a page of the site ---------------------------------------------


def csp_directives(answer: Answer) -> set[str]:
    return {part.strip().split(" ")[0] for part in answer["Content-Security-Policy"].split(";")}


@override_settings(SESSIONS_APP=PUBLIC)
@pytest.mark.parametrize(
    ("content_type", "attachment"),
    [
        ("text/html", True),
        ("image/svg+xml", True),
        ("TEXT/HTML; charset=utf-8", True),
        ("application/xhtml+xml", True),
        ("application/octet-stream", True),
        ("text/plain", False),
        ("application/json", False),
    ],
)
async def test_a_stream_body_is_sandboxed_and_active_types_are_downloads(
    door, content_type, attachment
):
    body = b'["<script>alert(document.cookie)</script>"]'
    created = await door.call("PUT", URL + "public/x", body, {"Content-Type": content_type})
    assert created.status == 201
    answers = {
        "create": created,
        "get": await door.call("GET", URL + "public/x?offset=-1"),
        "head": await door.call("HEAD", URL + "public/x"),
        "long-poll": await door.call("GET", URL + "public/x?offset=-1&live=long-poll"),
        "sse": await door.call("GET", URL + "public/x?offset=now&live=sse&cursor=1"),
        "error": await door.call("GET", URL + "public/x?offset=nope"),
    }
    assert answers["get"].body == (b'["<script>alert(document.cookie)</script>"]')
    for what, answer in answers.items():
        assert "sandbox" in csp_directives(answer), what
        assert answer["X-Content-Type-Options"] == "nosniff", what
    for what in ("create", "get", "head", "long-poll"):
        disposition = answers[what].get("Content-Disposition")
        assert (disposition == "attachment") is attachment, (what, disposition)
    assert answers["sse"].get("Content-Disposition") is None


# --- anonymous streams have ceilings ------------------------------------------------------------


def limits(**given) -> dict:
    return {**PUBLIC, **given}


async def test_anonymous_streams_stop_at_the_sites_count(door, alice):
    with override_settings(SESSIONS_APP=limits(ANONYMOUS_MAX_STREAMS=2)):
        first = await door.call("PUT", URL + "public/1", "a", {"Content-Type": "text/plain"})
        second = await door.call("PUT", URL + "public/2", "b", {"Content-Type": "text/plain"})
        third = await door.call("PUT", URL + "public/3", "c", {"Content-Type": "text/plain"})
        assert [first.status, second.status, third.status] == [201, 201, 413]
        assert third.json["code"] == "limit_exceeded"
        assert third.json["limit"] == "anonymous_streams"
        assert not await exists("public/3")
        # An idempotent PUT of one that exists still answers; sessions are not anonymous.
        again = await door.call("PUT", URL + "public/1", "", {"Content-Type": "text/plain"})
        assert again.status == 200
        assert (await put_json(door, "mine", await bearer(alice))).status == 201
        assert (await door.call("DELETE", URL + "public/1")).status == 204
        assert (
            await door.call("PUT", URL + "public/3", "c", {"Content-Type": "text/plain"})
        ).status == 201


async def test_an_anonymous_stream_stops_at_its_byte_ceiling_and_keeps_what_it_had(door):
    with override_settings(SESSIONS_APP=limits(ANONYMOUS_MAX_STREAM_BYTES=10)):
        too_big = await door.call(
            "PUT", URL + "public/big", "x" * 11, {"Content-Type": "text/plain"}
        )
        assert too_big.status == 413 and too_big.json["limit"] == "stream_bytes"
        assert not await exists("public/big")
        plain = {"Content-Type": "text/plain"}
        assert (await door.call("PUT", URL + "public/b", "12345", plain)).status == 201
        statuses = [
            (await door.call("POST", URL + "public/b", body, plain)).status
            for body in ("678", "90", "!", "?")  # the third one would make 11 bytes
        ]
        assert statuses == [204, 204, 413, 413]
        producer = {"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": "0", **plain}
        refused = await door.call("POST", URL + "public/b", "!", producer)
        assert refused.status == 413 and refused.json["code"] == "limit_exceeded"
        assert await stored("public/b") == [b"12345", b"678", b"90"]
        assert (await door.call("GET", URL + "public/b?offset=-1")).body == b"1234567890"
        # A fork is a stream of its own, with a ceiling of its own for what it adds.
        fork = await door.call(
            "PUT", URL + "public/f", "", {**plain, "Stream-Forked-From": URL + "public/b"}
        )
        assert fork.status == 201
        assert (await door.call("POST", URL + "public/f", "abc", plain)).status == 204


async def test_anonymous_streams_always_expire(door, alice):
    week = 7 * 24 * 3600
    with override_settings(SESSIONS_APP=limits(ANONYMOUS_MAX_TTL=week)):
        plain = {"Content-Type": "text/plain"}
        too_long = await door.call(
            "PUT", URL + "public/t", "", {**plain, "Stream-TTL": str(week + 1)}
        )
        too_far = await door.call(
            "PUT", URL + "public/t", "", {**plain, "Stream-Expires-At": "2999-01-01T00:00:00Z"}
        )
        assert [too_long.status, too_far.status] == [400, 400]
        assert not await exists("public/t")
        assert (
            await door.call("PUT", URL + "public/t", "", {**plain, "Stream-TTL": str(week)})
        ).status == 201
        assert (await door.call("PUT", URL + "public/n", "", plain)).status == 201
        head = await door.call("HEAD", URL + "public/n")
        assert head.get("Stream-TTL") is None and head.get("Stream-Expires-At") is None
        expires = await db(lambda: Session.objects.get(name="public/n").expires_at)()
        assert expires is not None
        owned = await put_json(door, "mine", {"Stream-TTL": str(week * 100), **await bearer(alice)})
        assert owned.status == 201
        assert await db(lambda: Session.objects.get(name="public/n").expires_at)() is not None


def test_the_settings_checks_refuse_a_ceiling_that_is_not_a_positive_integer():
    from sessions_app.checks import check_settings

    bad = {
        "ANONYMOUS_MAX_STREAMS": 0,
        "ANONYMOUS_MAX_STREAM_BYTES": "4M",
        "ANONYMOUS_MAX_TTL": None,
    }
    with override_settings(SESSIONS_APP=bad):
        errors = [e for e in check_settings() if e.id == "sessions_app.E002"]
    assert sorted(e.msg.split("'")[1] for e in errors) == sorted(bad)


# --- tokens stay out of the door's log lines --------------------------------------------------


@override_settings(SESSIONS_APP=PUBLIC, ALLOWED_HOSTS=["testserver"])
async def test_the_doors_log_lines_never_carry_a_token(door, alice, session, caplog):
    token = await db(mint_token)(alice)
    caplog.set_level(logging.DEBUG)
    answers = [
        await door.call("GET", URL + f"chat-1?offset=-1&token={token}"),  # 200
        await door.call("GET", URL + f"chat-1?offset=bad&token={token}"),  # 400
        await door.call("GET", URL + f"nothing?token={token}"),  # 404
        await door.call("GET", URL + f"chat-1?token={token}x"),  # 401
        await door.call("GET", URL + f"chat-1?token={token}", headers={"Host": "evil.example"}),
        await door.call("POST", URL + f"chat-1?token={token}", "[", {"Content-Type": JSON}),
    ]
    assert [a.status for a in answers] == [200, 400, 404, 401, 400, 400]
    logged = [record.getMessage() for record in caplog.records]
    assert any("/v1/stream/" in line for line in logged)  # the refusals were logged
    assert not [line for line in logged if token in line]
    # The header works as the query string does, and is what the docs recommend.
    header = await door.call(
        "GET", URL + "chat-1?offset=-1", headers={"Authorization": f"Bearer {token}"}
    )
    assert header.status == 200


async def test_a_user_at_the_sessions_quota_cannot_create_a_stream(door, alice):
    with override_settings(SESSIONS_APP={**PUBLIC, "MAX_SESSIONS_PER_USER": 1}):
        token = await bearer(alice)
        assert (await put_json(door, "mine", token)).status == 201
        refused = await put_json(door, "second", token)
        assert (refused.status, refused.json["code"]) == (413, "limit_exceeded")
        assert refused.json["limit"] == "sessions_per_user"
        assert not await exists("second")


@override_settings(SESSIONS_APP=PUBLIC)
async def test_a_user_s_session_cannot_be_forked_into_an_anonymous_stream_anyone_reads(
    door, alice, bob
):
    private = {"Content-Type": JSON, **await door.login(alice, csrf=True)}
    secret = json.dumps([text(delta="secret")])
    assert (await door.call("PUT", URL + "diary", secret, private)).status == 201
    await db(add_member)(await db(Session.objects.get)(name="diary"), bob)
    for user in (alice, bob):  # neither the owner nor a member may publish its history
        headers = {"Content-Type": JSON, **await door.login(user, csrf=True)}
        refused = await door.call(
            "PUT", URL + "public/leak", b"", {**headers, "Stream-Forked-From": URL + "diary"}
        )
        assert refused.status == 403 and refused.json["code"] == "forbidden"
    assert not await exists("public/leak")
    door.cookies.clear()
    assert (await door.call("GET", URL + "public/leak?offset=-1")).status == 404
    # forked under a name of its own, a fork stays its owner's
    mine = {"Content-Type": JSON, **await door.login(bob, csrf=True)}
    kept = await door.call(
        "PUT", URL + "bobs-copy", b"", {**mine, "Stream-Forked-From": URL + "diary"}
    )
    assert kept.status == 201
    door.cookies.clear()
    assert (await door.call("GET", URL + "bobs-copy?offset=-1")).status in (401, 404)


@override_settings(SESSIONS_APP=PUBLIC)
async def test_a_user_s_session_cannot_be_forked_from_an_anonymous_json_stream(door, alice):
    """Anyone's JSON (not events) became a session's history: its events page and the AG-UI
    reconnect answered 500, and a dataset export folding it failed."""
    anyone = json.dumps([5, "x", {"type": "RUN_STARTED", "run": 7}])
    assert (
        await door.call("PUT", URL + "public/any", anyone, {"Content-Type": JSON})
    ).status == 201
    headers = {"Content-Type": JSON, **await door.login(alice, csrf=True)}
    refused = await door.call(
        "PUT", URL + "mine", b"", {**headers, "Stream-Forked-From": URL + "public/any"}
    )
    assert refused.status == 403 and refused.json["code"] == "forbidden"
    assert not await exists("mine")
    # bytes are no session's events: a byte stream still forks into a user's own
    plain = {**headers, "Content-Type": "text/plain"}
    assert (await door.call("PUT", URL + "public/bytes", "abc", plain)).status == 201
    kept = await door.call(
        "PUT", URL + "my-bytes", b"", {**plain, "Stream-Forked-From": URL + "public/bytes"}
    )
    assert kept.status == 201


@override_settings(SESSIONS_APP=PUBLIC)
async def test_a_number_past_a_float_s_range_is_refused_and_the_stream_stays_json(door):
    """1e400 parses as infinity and was stored as ``Infinity``: every later read of the stream
    (by anyone: it is public) was no longer JSON."""
    assert (await door.call("PUT", URL + "public/j", "[1]", {"Content-Type": JSON})).status == 201
    for body in ("[2, 1e400]", '{"n": -2.5E+999}'):
        refused = await door.call("POST", URL + "public/j", body, {"Content-Type": JSON})
        assert (refused.status, refused.json["code"]) == (400, "bad_request")
    read = await door.call("GET", URL + "public/j?offset=-1")
    assert json.loads(read.body) == [1]
