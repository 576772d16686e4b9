"""The WebSocket door, frame by frame, over the real ASGI stack (auth, origin check, routing)."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.test import override_settings

from sessions_app import log, services
from sessions_app.access import mint_token
from sessions_app.models import Entry, Session
from tests.sessions_app.conftest import add_member, connect, text

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


async def entry_count(session):
    return await db(Entry.objects.filter(session=session).count)()


# --- subscribe, replay, live ---------------------------------------------------------------


async def test_subscribe_replays_history_then_delivers_live_entries(alice, session):
    async with connect(alice) as writer:
        ack = await writer.publish("chat-1", [text(delta="a"), text(delta="b")])
        assert ack["type"] == "ack"
        assert ack["offsets"] == [
            "0000000000000000_0000000000000001",
            "0000000000000000_0000000000000002",
        ]
        async with connect(alice) as reader:
            replayed, caught_up = await reader.subscribe("chat-1")
            assert [e["data"]["delta"] for e in replayed] == ["a", "b"]
            assert caught_up["offset"] == ack["offsets"][-1]
            await writer.publish("chat-1", [text(delta="c")])
            live = await reader.events(1)
            assert live[0]["data"]["delta"] == "c"
            assert live[0]["offset"] == "0000000000000000_0000000000000003"
            assert isinstance(live[0]["time"], int)


async def test_resume_from_an_offset_delivers_only_what_came_after(alice, session):
    async with connect(alice) as client:
        ack = await client.publish("chat-1", [text(delta=str(i)) for i in range(5)])
        replayed, caught_up = await client.subscribe("chat-1", after=ack["offsets"][2])
        assert [e["data"]["delta"] for e in replayed] == ["3", "4"]
        assert caught_up["offset"] == ack["offsets"][-1]


async def test_after_now_skips_history(alice, session):
    async with connect(alice) as client:
        await client.publish("chat-1", [text(delta="old")])
        replayed, caught_up = await client.subscribe("chat-1", after="now")
        assert replayed == [] and caught_up["offset"].endswith("0001")
        await client.publish("chat-1", [text(delta="new")])
        assert [e["data"]["delta"] for e in await client.events(1)] == ["new"]


async def test_snapshot_gives_the_folded_state_and_the_offset_to_continue_from(alice, session):
    async with connect(alice) as client:
        await client.publish(
            "chat-1",
            [{"type": "RUN_STARTED", "run": "r1"},
             {"type": "TEXT_MESSAGE_START", "run": "r1", "message": "m1", "data": {"role": "assistant"}},
             *[text(delta=d) for d in ["Hel", "lo"]]],
        )  # fmt: skip
    async with connect(alice) as device:
        frames, caught_up = await device.subscribe("chat-1", after="snapshot")
        assert len(frames) == 1  # one frame: the state, not 4 events
        snapshot = frames[0]
        assert snapshot["offset"].endswith("0004") and caught_up["offset"] == snapshot["offset"]
        assert snapshot["state"]["messages"][0]["text"] == "Hello"
        assert snapshot["state"]["runs"][0]["status"] == "running"
    async with connect(alice) as writer, connect(alice) as device:
        await device.subscribe("chat-1", after="snapshot")
        await writer.publish("chat-1", [text(delta="!")])
        live = await device.events(1)
        assert live[0]["offset"].endswith("0005")


async def test_two_devices_of_one_user_see_the_same_stream_live(alice, session):
    async with connect(alice) as phone, connect(alice) as laptop, connect(alice) as agent:
        await phone.subscribe("chat-1")
        await laptop.subscribe("chat-1")
        for i in range(20):
            await agent.publish("chat-1", [text(delta=str(i))])
        on_phone, on_laptop = await phone.events(20), await laptop.events(20)
        assert [e["offset"] for e in on_phone] == [e["offset"] for e in on_laptop]
        assert "".join(e["data"]["delta"] for e in on_phone) == "".join(str(i) for i in range(20))


async def test_entries_published_during_the_replay_are_delivered_once_in_order(alice, session):
    # The replay-to-live handoff: a writer keeps appending while the reader subscribes.
    async with connect(alice) as writer, connect(alice) as reader:
        await writer.publish("chat-1", [text(delta=str(i)) for i in range(300)])

        async def keep_writing():
            for i in range(40):
                await writer.publish("chat-1", [text(delta=f"w{i}")])

        task = asyncio.ensure_future(keep_writing())
        replayed, _ = await reader.subscribe("chat-1")
        await task
        received = replayed + await reader.events(340 - len(replayed))
        assert [int(e["offset"][-6:]) for e in received] == list(range(1, 341))
        assert await reader.nothing_more()


async def test_one_socket_multiplexes_several_sessions(alice, session):
    await db(Session.objects.create)(name="chat-2", owner=alice)
    async with connect(alice) as client, connect(alice) as writer:
        await client.subscribe("chat-1")
        await client.subscribe("chat-2")
        await writer.publish("chat-2", [text(delta="two")])
        await writer.publish("chat-1", [text(delta="one")])
        frames = [await client.recv_type("events"), await client.recv_type("events")]
        assert {(f["session"], f["events"][0]["data"]["delta"]) for f in frames} == {
            ("chat-2", "two"), ("chat-1", "one"),
        }  # fmt: skip
        reply = await client.request("unsubscribe", session="chat-2")
        assert reply["type"] == "unsubscribed"
        await writer.publish("chat-2", [text(delta="unseen")])
        await writer.publish("chat-1", [text(delta="seen")])
        frame = await client.recv_type("events")
        assert frame["session"] == "chat-1"


async def test_ping_pong(alice):
    async with connect(alice) as client:
        assert (await client.request("ping"))["type"] == "pong"


# --- presence ------------------------------------------------------------------------------


async def test_devices_joining_and_leaving_reach_the_other_subscribers(alice, session):
    async with connect(alice, path="/ws/sessions/") as phone:
        await phone.subscribe("chat-1")
        async with connect(alice) as laptop:
            await laptop.subscribe("chat-1")
            joined = await phone.recv_type("presence")
            assert joined["event"] == "join"
            assert joined["device"]["user"] == "alice"
            listed = await laptop.request("presence", session="chat-1")
            # the laptop learns of the phone from the phone's reply to its join
            for _ in range(20):
                if len(listed["devices"]) == 2:
                    break
                await asyncio.sleep(0.05)
                listed = await laptop.request("presence", session="chat-1")
            assert len(listed["devices"]) == 2
        left = await phone.recv_type("presence")
        assert left["event"] == "leave" and left["device"]["id"] == joined["device"]["id"]


@override_settings(SESSIONS_APP={"PRESENCE_TTL": 0.6})
async def test_a_device_that_stops_announcing_itself_is_forgotten_after_the_presence_ttl(
    alice, session
):
    async with connect(alice) as phone:
        await phone.subscribe("chat-1")
        # A device on a worker that then died: it said "here" once and never "leave".
        ghost = {"id": "ghost", "user": "alice", "label": "dead worker"}
        await get_channel_layer().group_send(
            log.group_name(session.pk),
            {"type": "presence.update", "session": session.pk, "event": "here", "device": ghost},
        )
        joined = await phone.recv_type("presence")
        assert joined["event"] == "join" and joined["device"] == ghost
        listed = await phone.request("presence", session="chat-1")
        assert ghost in listed["devices"]
        left = await phone.recv_type("presence")
        assert left["event"] == "leave" and left["device"] == ghost
        listed = await phone.request("presence", session="chat-1")
        assert listed["devices"] == [listed["self"]]


# --- bad input -----------------------------------------------------------------------------


async def test_bad_frames_get_error_frames_and_the_connection_keeps_its_subscriptions(
    alice, session
):
    async with connect(alice) as client, connect(alice) as writer:
        await client.subscribe("chat-1")
        await client.send("{not json")
        assert (await client.recv_type("error"))["code"] == "bad_request"
        await client.send("[1, 2]")
        assert (await client.recv_type("error"))["code"] == "bad_request"
        assert (await client.request("dance"))["code"] == "bad_request"
        assert (await client.request("subscribe", session="chat-1"))["code"] == "conflict"
        bad_offset = await client.request("subscribe", session="chat-1x", after="12")
        assert bad_offset["code"] in ("bad_offset", "not_found")
        await writer.publish("chat-1", [text(delta="still here")])
        assert (await client.events(1))[0]["data"]["delta"] == "still here"


async def test_a_malformed_offset_is_refused(alice, session):
    async with connect(alice) as client:
        for after in ("12", 12, "", "0000000000000000-0000000000000001", {"x": 1}):
            reply = await client.request("subscribe", session="chat-1", after=after)
            assert reply["code"] == "bad_offset"
        reply = await client.request(
            "subscribe", session="chat-1", after="0000000000000000_0000000000000009"
        )
        assert reply["code"] == "bad_request" and "beyond the head" in reply["message"]


async def test_a_publish_with_one_bad_event_writes_nothing(alice, session):
    async with connect(alice) as client:
        reply = await client.publish("chat-1", [text(delta="ok"), {"type": "TEXT_MESSAGE_CONTENT"}])
        assert reply["type"] == "error" and reply["code"] == "bad_event" and reply["index"] == 1
        for events in ([], "x", None, [{"type": "NOPE"}]):
            assert (await client.publish("chat-1", events))["type"] == "error"
    assert await entry_count(session) == 0


@override_settings(SESSIONS_APP={"MAX_FRAME_BYTES": 2000, "MAX_EVENT_BYTES": 500})
async def test_oversized_frames_and_events_are_refused(alice, session):
    async with connect(alice) as client:
        # An oversized frame is not parsed, so its error carries no id.
        await client.send(
            {"op": "publish", "session": "chat-1", "events": [text(delta="x" * 3000)]}
        )
        reply = await client.recv_type("error")
        assert reply["code"] == "limit_exceeded" and reply["limit"] == "frame_bytes"
        reply = await client.publish("chat-1", [text(delta="x" * 800)])
        assert reply["code"] == "limit_exceeded" and reply["limit"] == "event_bytes"
        assert (await client.request("ping"))["type"] == "pong"
    assert await entry_count(session) == 0


@override_settings(SESSIONS_APP={"MAX_FRAMES_PER_SECOND": 1, "FRAME_BURST": 3})
async def test_a_flood_of_frames_is_rate_limited(alice):
    async with connect(alice) as client:
        for _ in range(6):
            await client.send({"op": "ping"})
        replies = [await client.recv() for _ in range(6)]
        assert [r["type"] for r in replies].count("pong") == 3
        assert {r.get("limit") for r in replies if r["type"] == "error"} == {"frames_per_second"}


@override_settings(SESSIONS_APP={"MAX_SUBSCRIPTIONS_PER_CONNECTION": 2})
async def test_subscriptions_per_connection_are_limited(alice):
    for i in range(3):
        await db(Session.objects.create)(name=f"s{i}", owner=alice)
    async with connect(alice) as client:
        assert (await client.subscribe("s0"))[1]["type"] == "caught_up"
        assert (await client.subscribe("s1"))[1]["type"] == "caught_up"
        _, refused = await client.subscribe("s2")
        assert refused["code"] == "limit_exceeded" and refused["limit"] == "subscriptions"


async def test_appending_to_a_closed_session_is_refused(alice, session):
    await db(Session.objects.filter(pk=session.pk).update)(closed=True)
    async with connect(alice) as client:
        assert (await client.publish("chat-1", [text()]))["code"] == "stream_closed"
    assert await entry_count(session) == 0


# --- idempotent producers ------------------------------------------------------------------


async def test_a_retried_publish_lands_once_and_a_gap_is_refused(alice, session):
    async with connect(alice) as client:
        first = await client.publish(
            "chat-1", [text(delta="a")], producer={"id": "p1", "epoch": 0, "seq": 0}
        )
        retry = await client.publish(
            "chat-1", [text(delta="a")], producer={"id": "p1", "epoch": 0, "seq": 0}
        )
        assert retry["duplicate"] is True and retry["offsets"] == first["offsets"]
        gap = await client.publish(
            "chat-1", [text(delta="c")], producer={"id": "p1", "epoch": 0, "seq": 2}
        )
        assert gap["code"] == "producer_seq_gap" and gap["expected_seq"] == 1
        stale = await client.publish(
            "chat-1", [text()], producer={"id": "p1", "epoch": -1, "seq": 0}
        )
        assert stale["code"] == "bad_request"
    assert await entry_count(session) == 1


# --- who may do what -----------------------------------------------------------------------


async def test_anonymous_sockets_are_refused(session):
    async with connect() as client:
        frame = await client.recv()
        assert frame["code"] == "unauthenticated"
        assert (await client.ws.receive_output(timeout=2))["code"] == 4401


async def test_a_forbidden_session_looks_exactly_like_an_absent_one(alice, bob, session):
    async with connect(bob) as client:
        _, forbidden = await client.subscribe("chat-1")
        _, absent = await client.subscribe("no-such-session")
        published = await client.publish("chat-1", [text()])
    strip = lambda frame: {k: v for k, v in frame.items() if k != "id"}  # noqa: E731
    assert strip(forbidden) == strip(absent) == strip(published)
    assert forbidden["code"] == "not_found"
    assert await entry_count(session) == 0


async def test_members_may_subscribe_and_publish(alice, bob, session):
    await db(add_member)(session, bob)
    async with connect(bob) as client:
        assert (await client.subscribe("chat-1"))[1]["type"] == "caught_up"
        assert (await client.publish("chat-1", [text()]))["type"] == "ack"


async def test_a_token_opens_only_the_sessions_it_names(alice, session):
    await db(Session.objects.create)(name="other", owner=alice)
    token = await db(mint_token)(alice, ["other"])
    async with connect(token=token) as client:
        assert (await client.subscribe("chat-1"))[1]["code"] == "not_found"
        assert (await client.subscribe("other"))[1]["type"] == "caught_up"


async def test_a_forged_or_expired_token_is_anonymous(alice, session):
    token = await db(mint_token)(alice)
    async with connect(token=token[:-2] + "xx") as client:
        assert (await client.recv())["code"] == "unauthenticated"
    with override_settings(SESSIONS_APP={"TOKEN_MAX_AGE": 1}):
        await asyncio.sleep(2.1)
        async with connect(token=token) as client:
            assert (await client.recv())["code"] == "unauthenticated"


async def test_the_session_cookie_authenticates_too(alice, session, client):
    await db(client.force_login)(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    async with connect(headers=[(b"cookie", cookie)]) as ws:
        assert (await ws.recv())["type"] == "hello"
        assert (await ws.subscribe("chat-1"))[1]["type"] == "caught_up"


async def test_foreign_origins_are_refused_and_our_own_accepted(alice, session):
    async with connect(alice, headers=[(b"origin", b"https://evil.example")]) as client:
        assert client.connected is False
    async with connect(alice, headers=[(b"origin", b"http://localhost:8000")]) as client:
        assert client.connected is True


async def test_a_subscriber_catches_up_even_when_every_notification_is_lost(
    alice, session, monkeypatch
):
    # Notifications are hints: with none at all, the per-worker tail check still delivers.
    async def lost(notes):
        return None

    monkeypatch.setattr("sessions_app.log.fanout.notify", lost)
    async with connect(alice) as writer, connect(alice) as reader:
        await reader.subscribe("chat-1")
        await writer.publish("chat-1", [text(delta="a"), text(delta="b")])
        await writer.publish("chat-1", [text(delta="c")])
        received = await reader.events(3, timeout=4)
    assert [e["data"]["delta"] for e in received] == ["a", "b", "c"]


async def test_publishes_sent_without_waiting_land_and_are_acknowledged_in_frame_order(
    alice, session
):
    async with connect(alice) as client:
        for i in range(20):
            await client.send({"op": "publish", "id": i, "session": "chat-1",
                               "events": [text(delta=str(i))]})  # fmt: skip
        # A frame of another kind waits for the publishes before it: the run it starts and
        # the heartbeat that follows it are seen in that order.
        await client.send({"op": "publish", "id": "start", "session": "chat-1",
                           "events": [{"type": "RUN_STARTED", "run": "r9"}]})  # fmt: skip
        await client.send({"op": "heartbeat", "id": "beat", "session": "chat-1", "run": "r9"})
        replies = [await client.recv_type("ack", "heartbeat") for _ in range(22)]
        assert [r["id"] for r in replies] == [*range(20), "start", "beat"]
        offsets = [r["offsets"][0] for r in replies[:21]]
        assert offsets == sorted(offsets) and len(set(offsets)) == 21
        assert replies[-1]["running"] is True
        replayed, _ = await client.subscribe("chat-1")
    deltas = [e["data"]["delta"] for e in replayed if e["type"] == "TEXT_MESSAGE_CONTENT"]
    assert deltas == [str(i) for i in range(20)]


# --- a client that goes away while it is sent to -----------------------------------------------


class ClosedUnderfoot:
    """The server side of a socket whose client has just gone: a send raises what daphne's
    protocol raises ("Attempt to send on a closed protocol") before the server has told the
    application that the client left."""

    def __init__(self, app):
        self.app, self.closed = app, False

    async def __call__(self, scope, receive, send):
        async def sending(message):
            if self.closed and message["type"] == "websocket.send":
                from autobahn.exception import Disconnected

                raise Disconnected("Attempt to send on a closed protocol")
            await send(message)

        return await self.app(scope, receive, sending)


def gauge(name):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name) or 0.0


async def test_a_close_racing_a_delivery_leaves_no_socket_subscription_or_task_behind(
    alice, session
):
    from channels.testing import WebsocketCommunicator

    from sessions_app.routing import websocket_application

    sockets, subscriptions = gauge("sessions_websockets"), gauge("sessions_subscriptions")
    app = ClosedUnderfoot(websocket_application())
    token = await db(mint_token)(alice)
    communicator = WebsocketCommunicator(app, f"/ws/sessions/?token={token}")
    assert (await communicator.connect())[0]
    tasks_before = set(asyncio.all_tasks())
    await communicator.send_json_to({"op": "subscribe", "id": 1, "session": "chat-1"})
    while (await communicator.receive_json_from(timeout=10))["type"] != "caught_up":
        pass
    assert gauge("sessions_websockets") == sockets + 1
    assert gauge("sessions_subscriptions") == subscriptions + 1
    app.closed = True
    await log.append(services.request(session.pk, [text(delta="to nobody")]))
    await asyncio.wait_for(communicator.future, 5)  # the consumer stopped by itself
    assert communicator.future.exception() is None
    assert gauge("sessions_websockets") == sockets
    assert gauge("sessions_subscriptions") == subscriptions
    await asyncio.sleep(0)
    left = {t for t in asyncio.all_tasks() - tasks_before if not t.done()}
    assert not [t for t in left if "SessionConsumer" in repr(t.get_coro())]


@pytest.mark.django_db(transaction=True)
async def test_an_op_or_session_that_is_not_text_is_refused_with_its_code(alice, session):
    """Lists and objects where a name belongs: a coded refusal, not an internal error."""
    async with connect(alice) as client:
        await client.subscribe("chat-1")
        for frame, code in [
            ({"op": ["subscribe"]}, "bad_request"),
            ({"op": {"a": 1}}, "bad_request"),
            ({"op": "unsubscribe", "session": [1]}, "not_found"),
            ({"op": "presence", "session": {}}, "not_found"),
        ]:
            client.counter += 1
            await client.send({**frame, "id": f"x{client.counter}"})
            while (reply := await client.recv())["type"] != "error":
                pass
            assert (reply["code"], reply["id"]) == (code, f"x{client.counter}"), frame
        # The socket and its subscription are still there.
        assert (await client.request("unsubscribe", session="chat-1"))["type"] == "unsubscribed"
