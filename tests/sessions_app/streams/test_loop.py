"""A lone append on PostgreSQL runs on the event loop's own connection (log/lanes.py).

That path keeps each stream's lookup for a moment and prepares its statements on the server;
these tests change what it kept behind its back, as another worker, an operator or a
connection pooler would, and check that every append is still answered as the stream is now,
with nothing written twice or lost.
"""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import AsyncClient, override_settings
from django.urls import include, path

from sessions_app.log import binding, lanes
from sessions_app.models import Entry, Session

urlpatterns = [path("v1/stream/", include("sessions_app.streams.urls"))]

pytestmark = [
    pytest.mark.real_engines,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls(__name__),
]

db = database_sync_to_async
URL = "/v1/stream/public/loop"
JSON = "application/json"


@pytest.fixture(autouse=True)
def _public():
    with override_settings(SESSIONS_APP={"ANONYMOUS_STREAM_PREFIX": "public/"}):
        yield


async def post(client: AsyncClient, body: object, **headers: str):
    return await client.post(URL, data=json.dumps(body), content_type=JSON, headers=headers)


async def messages() -> list[object]:
    rows = await db(list)(
        Entry.objects.filter(session__name="public/loop", session__deleted=False)
        .order_by("seq")
        .values_list("body", flat=True)
    )
    return [json.loads(bytes(body)) for body in rows]


def loop_connection():
    """The psycopg connection this event loop's appends use."""
    return lanes.current()


async def test_appends_run_on_the_loops_connection_and_prepare_their_statements():
    client = AsyncClient()
    assert (await client.put(URL, data=b"[]", content_type=JSON)).status_code == 201
    for i in range(8):
        answer = await post(client, {"i": i})
        assert answer.status_code == 204, answer.content
    conn = loop_connection()
    assert conn is not None and not conn.closed
    cursor = await conn.execute("SELECT count(*) FROM pg_prepared_statements")
    assert (await cursor.fetchone())[0] >= 1  # the append statement, after five uses
    assert await messages() == [{"i": i} for i in range(8)]


async def test_a_stream_created_again_with_another_type_is_judged_as_it_is_now():
    client = AsyncClient()
    await client.put(URL, data=b"[]", content_type=JSON)
    for n in range(3):  # the JSON stream is now kept
        assert (await post(client, {"n": n})).status_code == 204
    assert (await client.delete(URL)).status_code == 204
    created = await client.put(URL, data=b"new ", content_type="text/plain")
    assert created.status_code == 201
    # The kept copy says JSON; the stream is text now.
    accepted = await client.post(URL, data=b"plain text", content_type="text/plain")
    assert accepted.status_code == 204
    assert accepted["Stream-Next-Offset"].endswith("_0000000000000002")
    refused = await post(client, {"n": 3})
    assert refused.status_code == 409
    assert json.loads(refused.content)["code"] == "content_type_mismatch"
    read = await client.get(URL + "?offset=-1")
    assert read.content == b"new plain text"


async def test_a_stream_closed_meanwhile_refuses_the_next_append_with_its_offset():
    client = AsyncClient()
    await client.put(URL, data=b"[]", content_type=JSON)
    for n in range(3):  # the first lone append of a loop takes the writer thread
        assert (await post(client, {"n": n})).status_code == 204
    # Closed elsewhere (another worker, the admin): the kept lookup still says open.
    await db(Session.objects.filter(name="public/loop").update)(closed=True)
    refused = await post(client, {"n": 3})
    assert refused.status_code == 409
    assert refused["Stream-Closed"] == "true"
    assert refused["Stream-Next-Offset"].endswith("_0000000000000003")
    assert await messages() == [{"n": n} for n in range(3)]


async def test_a_stream_closed_meanwhile_says_so_before_judging_the_body():
    client = AsyncClient()
    await client.put(URL, data=b"[]", content_type=JSON)
    for n in range(3):
        assert (await post(client, {"n": n})).status_code == 204
    closed = await client.post(URL, data=b"", content_type=JSON, headers={"Stream-Closed": "true"})
    assert closed.status_code == 204
    # A bad body on a closed stream: the closure is the answer, as the protocol has it.
    refused = await client.post(URL, data=b"{not json", content_type=JSON)
    assert refused.status_code == 409
    assert refused["Stream-Closed"] == "true"
    assert refused["Stream-Next-Offset"].endswith("_0000000000000003")


async def test_an_expired_stream_is_not_appended_to_though_its_lookup_was_kept():
    client = AsyncClient()
    await client.put(URL, data=b"[]", content_type=JSON, headers={"Stream-TTL": "60"})
    for n in range(3):
        assert (await post(client, {"n": n})).status_code == 204
    await db(Session.objects.filter(name="public/loop").update)(expires_at="2000-01-01T00:00Z")
    assert (await post(client, {"n": 3})).status_code == 404
    assert await messages() == [{"n": n} for n in range(3)]


async def test_prepared_statements_lost_by_a_pooler_are_sent_again_unprepared(monkeypatch):
    monkeypatch.setattr(binding, "PREPARING", True)  # what it turns off, for this test only
    client = AsyncClient()
    await client.put(URL, data=b"[]", content_type=JSON)
    for i in range(8):
        await post(client, {"i": i})
    # A pooler in transaction mode hands the next statement to another server process, which
    # never saw the statements psycopg prepared: drop them behind psycopg's back.
    loop_connection().pgconn.exec_(b"DEALLOCATE ALL")
    answer = await post(client, {"i": 8})
    assert answer.status_code == 204
    assert answer["Stream-Next-Offset"].endswith("_0000000000000009")
    for i in range(9, 12):
        assert (await post(client, {"i": i})).status_code == 204
    assert await messages() == [{"i": i} for i in range(12)]  # each once, in order
    assert loop_connection().prepare_threshold is None  # and prepares no more


async def test_a_killed_connection_refuses_one_append_then_reconnects():
    client = AsyncClient()
    await client.put(URL, data=b"[]", content_type=JSON)
    for n in range(2):
        assert (await post(client, {"n": n})).status_code == 204
    pid = loop_connection().info.backend_pid

    def terminate() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    await db(terminate)()
    refused = await post(client, {"n": 2})
    assert refused.status_code == 503  # the statement never reached a server: nothing written
    assert (await post(client, {"n": 3})).status_code == 204
    assert await messages() == [{"n": 0}, {"n": 1}, {"n": 3}]


async def test_a_loop_that_served_one_append_opens_no_connection():
    # Under WSGI an async view gets an event loop per request: one connection each would pile up.
    client = AsyncClient()
    await client.put(URL, data=b"[]", content_type=JSON)
    assert (await post(client, {"n": 0})).status_code == 204
    assert loop_connection() is None
    assert (await post(client, {"n": 1})).status_code == 204
    assert loop_connection() is not None
    assert await messages() == [{"n": 0}, {"n": 1}]


async def test_the_loops_connection_can_be_turned_off():
    client = AsyncClient()
    await client.put(URL, data=b"[]", content_type=JSON)
    with override_settings(
        SESSIONS_APP={"ANONYMOUS_STREAM_PREFIX": "public/", "STREAMS_LOOP_CONNECTION": False}
    ):
        assert (await post(client, {"n": 1})).status_code == 204
        assert loop_connection() is None
    assert await messages() == [{"n": 1}]
