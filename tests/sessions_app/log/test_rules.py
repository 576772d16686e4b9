"""The one commit's optional rules (the Durable Streams fields of ``log.AppendRequest``), the
producer rule every door answers alike, and the event loop's connection open to every door.

Each rule is checked on the log itself, as any door would use it: what it refuses writes
nothing, and what it accepts is what a reader then sees.
"""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient, override_settings
from django.urls import include, path
from django.utils import timezone

from sessions_app import log
from sessions_app.domain.errors import (
    BadRequest,
    Conflict,
    LimitExceeded,
    NotFound,
    ProducerSeqGap,
    StreamClosed,
)
from sessions_app.domain.producers import ProducerClaim
from sessions_app.log import lanes
from sessions_app.models import Entry, Session
from tests.sessions_app.conftest import connect, text

urlpatterns = [path("v1/stream/", include("sessions_app.streams.urls"))]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]
db = database_sync_to_async


def items(*names: str) -> list[log.Item]:
    return [log.Item(f'{{"type":"CUSTOM","data":{{"name":"{n}"}}}}', "CUSTOM") for n in names]


async def count(session) -> int:
    return await db(Entry.objects.filter(session=session).count)()


async def fresh(session) -> Session:
    return await db(Session.objects.get)(pk=session.pk)


# --- the Durable Streams fields ---------------------------------------------------------------


async def test_stream_seq_must_rise_and_a_refused_one_writes_nothing(session):
    await log.append(log.AppendRequest(session.pk, items("a"), stream_seq="002"))
    with pytest.raises(Conflict):
        await log.append(log.AppendRequest(session.pk, items("b"), stream_seq="002"))
    with pytest.raises(Conflict):
        await log.append(log.AppendRequest(session.pk, items("b"), stream_seq="001"))
    done = await log.append(log.AppendRequest(session.pk, items("c"), stream_seq="010"))
    assert done.seqs == range(2, 3)
    assert await count(session) == 2
    assert (await fresh(session)).metadata[log.STATE_KEY]["seq"] == "010"


async def test_close_closes_and_only_a_lone_close_is_taken_afterwards(session):
    closing = await log.append(log.AppendRequest(session.pk, items("last"), close=True))
    assert closing.closed and closing.head == 1
    assert (await fresh(session)).closed
    again = await log.append(log.AppendRequest(session.pk, [], close=True))
    assert again.closed and again.head == 1 and again.wrote == 0
    with pytest.raises(StreamClosed) as refused:
        await log.append(log.AppendRequest(session.pk, items("late")))
    assert refused.value.details["head"] == 1
    # A body that made no entries is still a body: refused, not taken as a lone close.
    with pytest.raises(StreamClosed):
        await log.append(log.AppendRequest(session.pk, [], close=True, has_body=True))
    assert await count(session) == 1


async def test_a_producers_retry_after_the_close_is_a_duplicate(session):
    claim = ProducerClaim("p", 0, 0)
    first = await log.append(log.AppendRequest(session.pk, items("a"), claim, close=True))
    retry = await log.append(log.AppendRequest(session.pk, items("a"), claim, close=True))
    assert retry.duplicate and retry.seqs == first.seqs and retry.closed
    assert (retry.producer_epoch, retry.producer_seq) == (0, 0)
    assert await count(session) == 1


async def test_ttl_pushes_the_expiry_ahead(session):
    before = timezone.now()
    await log.append(log.AppendRequest(session.pk, items("a", "b"), ttl=3600))
    expires = (await fresh(session)).expires_at
    assert expires is not None and (expires - before).total_seconds() >= 3600


async def test_max_bytes_refuses_an_append_past_the_limit_and_writes_nothing(session):
    one = items("a")
    limit = one[0].size * 2
    await log.append(log.AppendRequest(session.pk, one, max_bytes=limit))
    await log.append(log.AppendRequest(session.pk, items("b"), max_bytes=limit))
    with pytest.raises(LimitExceeded) as refused:
        await log.append(log.AppendRequest(session.pk, items("c"), max_bytes=limit))
    assert refused.value.details["limit"] == "stream_bytes"
    assert await count(session) == 2


class Deleted(Conflict):
    code = "deleted"


def deleted(row: log.Locked) -> None:
    raise Deleted("deleted" if row.deleted else "expired", head=row.head)


async def test_a_deleted_session_takes_nothing_and_the_door_says_how(session):
    await log.append(log.AppendRequest(session.pk, items("a")))
    await db(Session.objects.filter(pk=session.pk).update)(deleted=True)
    with pytest.raises(NotFound):
        await log.append(log.AppendRequest(session.pk, items("b")))
    with pytest.raises(Deleted) as answered:
        await log.append(log.AppendRequest(session.pk, items("b"), when_gone=deleted))
    assert (answered.value.message, answered.value.details) == ("deleted", {"head": 1})
    assert await count(session) == 1


async def test_an_expired_session_takes_nothing(session):
    await db(Session.objects.filter(pk=session.pk).update)(expires_at="2000-01-01T00:00Z")
    with pytest.raises(NotFound):
        await log.append(log.AppendRequest(session.pk, items("a")))
    with pytest.raises(Deleted, match="expired"):
        await log.append(log.AppendRequest(session.pk, items("a"), when_gone=deleted))
    assert await count(session) == 0


# --- one producer rule for every door ---------------------------------------------------------


async def test_a_new_epoch_not_starting_at_zero_is_a_bad_request_on_the_log(session):
    await log.append(log.AppendRequest(session.pk, items("a"), ProducerClaim("p", 0, 0)))
    with pytest.raises(BadRequest) as refused:
        await log.append(log.AppendRequest(session.pk, items("b"), ProducerClaim("p", 1, 5)))
    assert not isinstance(refused.value, ProducerSeqGap)
    # A producer never seen that does not start at 0 has a gap (409), on every door too.
    with pytest.raises(ProducerSeqGap):
        await log.append(log.AppendRequest(session.pk, items("c"), ProducerClaim("q", 1, 5)))
    assert await count(session) == 1


async def test_a_new_epoch_not_starting_at_zero_is_a_bad_request_on_the_websocket(alice, session):
    async with connect(alice) as client:
        first = {"id": "p", "epoch": 0, "seq": 0}
        assert "offsets" in await client.publish("chat-1", [text(delta="a")], producer=first)
        bumped = {"id": "p", "epoch": 1, "seq": 5}
        refused = await client.publish("chat-1", [text(delta="b")], producer=bumped)
    assert refused["type"] == "error" and refused["code"] == "bad_request"
    assert await count(session) == 1


@override_settings(SESSIONS_APP={"ANONYMOUS_STREAM_PREFIX": "public/"})
async def test_a_new_epoch_not_starting_at_zero_is_a_bad_request_on_durable_streams():
    client, url = AsyncClient(), "/v1/stream/public/epochs"
    created = await client.put(url, data=b"0", content_type="text/plain")
    assert created.status_code == 201

    async def post(epoch: int, seq: int, body: bytes):
        headers = {"Producer-Id": "p", "Producer-Epoch": str(epoch), "Producer-Seq": str(seq)}
        return await client.post(url, data=body, content_type="text/plain", headers=headers)

    assert (await post(0, 0, b"a")).status_code == 200
    assert (await post(1, 5, b"b")).status_code == 400
    read = await client.get(url + "?offset=-1")
    assert read.content == b"0a"


# --- the event loop's own connection, for every door ------------------------------------------


@pytest.mark.real_engines
async def test_lone_websocket_publishes_take_the_loops_connection(alice, session):
    async with connect(alice) as client:
        for n in range(4):
            event = {"type": "CUSTOM", "data": {"name": "note", "value": str(n)}}
            ack = await client.publish("chat-1", [event])
            assert len(ack["offsets"]) == 1
    conn = lanes.current()
    assert conn is not None and not conn.closed  # opened by these publishes, on this loop
    rows = await db(list)(
        Entry.objects.filter(session=session).order_by("seq").values_list("seq", "body")
    )
    assert [seq for seq, _ in rows] == [1, 2, 3, 4]
    values = [json.loads(bytes(body))["data"]["value"] for _, body in rows]
    assert values == ["0", "1", "2", "3"]


@pytest.mark.real_engines
async def test_a_lone_log_append_on_the_loops_connection_still_refuses_a_closed_session(session):
    for name in ("a", "b"):
        await log.append(log.AppendRequest(session.pk, items(name)))
    assert lanes.current() is not None
    await db(Session.objects.filter(pk=session.pk).update)(closed=True)
    with pytest.raises(StreamClosed):
        await log.append(log.AppendRequest(session.pk, items("c")))
    assert await count(session) == 2
