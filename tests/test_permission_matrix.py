"""Every operation against every actor, from one table (tests/permission_matrix_table.py).

Each cell is performed against the real apps (the demo site's URLs and WebSocket stack). A
``404`` cell must be indistinguishable from asking for something that does not exist (same
status, same body); a refused write must leave the log and the mlexec tables unchanged. The
table is also docs/permissions.md, checked here to be the table's rendering.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import AsyncClient

from tests import permission_matrix_table as table

pytest.importorskip("mlexec_app")  # the matrix covers both apps: the demo site's settings
pytest.importorskip("channels")

from mlexec_app import keys as ml_keys  # noqa: E402
from mlexec_app import services as ml_services  # noqa: E402
from mlexec_app.models import Run as MlRun  # noqa: E402
from sessions_app import keys, log, services  # noqa: E402
from sessions_app.access import mint_token  # noqa: E402
from sessions_app.models import Entry, Membership, Session  # noqa: E402
from sessions_app.routing import websocket_application  # noqa: E402

SESSION, ABSENT = "chat-1", "chat-0"
PROJECT, ABSENT_PROJECT = "cat-detector", "dog-detector"
EVENT = {"type": "CUSTOM", "data": {"name": "probe", "value": 1}}


@dataclass
class World:
    tokens: dict[str, str] = field(default_factory=dict)
    session_keys: dict[str, str] = field(default_factory=dict)
    ml_keys: dict[str, str] = field(default_factory=dict)


def _project(owner, name):
    return ml_services.create_project(
        owner, name=name, problem_statement="p", data_type="image",
        abstraction_layer="deep_learning", metric_name="error", target_value=0.02,
    )  # fmt: skip


@pytest.fixture
def world(transactional_db):
    make = get_user_model().objects.create_user
    alice, bob, carol = make("alice"), make("bob"), make("carol")
    chat = Session.objects.create(name=SESSION, owner=alice, title="Chat")
    Membership.objects.create(session=chat, user=bob)
    elsewhere = Session.objects.create(name="elsewhere", owner=alice)
    log.append_sync(services.request(chat.pk, [{"type": "RUN_STARTED", "run": "r1"}]))
    w = World()
    w.tokens = {
        "owner": mint_token(alice),
        "member": mint_token(bob),
        "other user": mint_token(carol),
    }
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 86400):
        w.tokens["expired token"] = mint_token(alice)
    for actor, user in (("owner", alice), ("member", bob), ("other user", carol)):
        w.session_keys[actor] = keys.create_key(user, actor, all_sessions=True)[1]
    w.session_keys["key scoped elsewhere"] = keys.create_key(alice, "s", [elsewhere])[1]
    gone = Session.objects.create(name="gone", owner=alice)
    w.session_keys["emptied scope"] = keys.create_key(alice, "e", [gone])[1]
    gone.delete()  # its key must not widen to every session of alice's
    revoked, w.session_keys["revoked key"] = keys.create_key(alice, "r", all_sessions=True)
    keys.revoke(revoked)
    project, other_project = _project(alice, "Cat detector"), _project(alice, "Other")
    assert project.slug == PROJECT
    for actor, user in (("owner", alice), ("member", bob), ("other user", carol)):
        w.ml_keys[actor] = ml_keys.create_api_key(user, actor, all_projects=True)[1]
    w.ml_keys["key scoped elsewhere"] = ml_keys.create_api_key(
        alice, "s", projects=[other_project]
    )[1]
    gone_project = _project(alice, "Gone")
    w.ml_keys["emptied scope"] = ml_keys.create_api_key(alice, "e", projects=[gone_project])[1]
    gone_project.delete()
    revoked_ml, w.ml_keys["revoked key"] = ml_keys.create_api_key(alice, "r", all_projects=True)
    ml_keys.revoke(alice, revoked_ml.pk)
    return w


# --- credentials -------------------------------------------------------------------------------


def bearer_for(world: World, actor: str, door: str) -> str | None:
    if actor == "anonymous":
        return None
    if actor == "expired token":
        return world.tokens[actor]
    if door == "mlexec":
        return world.ml_keys[actor]
    if door in ("Durable Streams", "WebSocket") and actor in world.tokens:
        return world.tokens[actor]
    return world.session_keys[actor]


# --- performing one cell -----------------------------------------------------------------------


def http_request(op: table.Operation, name: str) -> tuple[str, str, Any]:
    method, template = op.call.split(" ", 1)
    path = template.replace("{name}", name).replace("{ref}", name)
    bodies = {
        "publish": {"events": [EVENT]},
        "send message": {"text": "hello"},
        "cancel": {"run": "r1"},
        "steer": {"run": "r1", "text": "shorter"},
        "interrupt": {"text": "instead"},
        "start run": {"run_id": "r2"},
        "manage members": {"username": "carol"},
        "change session": {"title": "renamed"},
        "Durable Streams append": [EVENT],
        "AG-UI cancel": {},
        "mlexec log run": {"name": "probe"},
    }
    if op.name == "history long-poll":
        path += "?timeout=0.2"
    if op.name == "Durable Streams read":
        path += "?offset=-1"
    return method, path, bodies.get(op.name)


async def perform_http(op: table.Operation, name: str, credential: str | None):
    method, path, body = http_request(op, name)
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    client = AsyncClient()
    call = getattr(client, method.lower())
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs.update(data=json.dumps(body), content_type="application/json")
    response = await call(path, **kwargs)
    status = response.status_code
    if response.streaming:  # an SSE door that opened: allowed; do not follow it
        await response.aclose() if hasattr(response, "aclose") else response.close()
        return table.ALLOW, None
    content = response.content.decode()
    try:
        parsed: Any = json.loads(content)
    except ValueError:
        parsed = content
    outcome = table.ALLOW if status < 400 else str(status)
    return outcome, (status, parsed)


def ws_frames(op: table.Operation, name: str) -> list[dict[str, Any]]:
    frames = {
        "subscribe": [{"op": "subscribe", "session": name, "after": "-1"}],
        "publish": [{"op": "publish", "session": name, "events": [EVENT]}],
        "cancel": [{"op": "cancel", "session": name, "run": "r1"}],
        "steer": [{"op": "steer", "session": name, "run": "r1", "text": "shorter"}],
        "interrupt": [{"op": "interrupt", "session": name, "text": "instead"}],
        "presence": [
            {"op": "subscribe", "session": name, "after": "now"},
            {"op": "presence", "session": name},
        ],
    }[op.name]
    return [{**frame, "id": i} for i, frame in enumerate(frames)]


async def perform_ws(op: table.Operation, name: str, credential: str | None):
    query, headers = "", []
    if credential and credential.startswith("dsk_"):
        headers = [(b"authorization", f"Bearer {credential}".encode())]
    elif credential:
        query = f"?token={credential}"
    ws = WebsocketCommunicator(websocket_application(), "/ws/sessions/" + query, headers=headers)
    connected, _ = await ws.connect()
    assert connected
    try:
        first = json.loads(await ws.receive_from())
        if first["type"] == "error":
            closed = await ws.receive_output()
            assert closed == {"type": "websocket.close", "code": 4401}, closed
            return table.UNAUTHENTICATED, first
        assert first["type"] == "hello", first
        reply: dict[str, Any] = {}
        for frame in ws_frames(op, name):
            await ws.send_to(text_data=json.dumps(frame))
            while True:
                reply = json.loads(await ws.receive_from())
                if reply.get("id") == frame["id"] and reply["type"] not in ("events",):
                    break
        if reply["type"] == "error":
            reply.pop("id")
            return (table.NOT_FOUND if reply["code"] == "not_found" else reply["code"]), reply
        return table.ALLOW, None
    finally:
        await ws.disconnect()


async def perform(world: World, op: table.Operation, actor: str, name: str):
    credential = bearer_for(world, actor, op.door)
    door = perform_ws if op.door == "WebSocket" else perform_http
    outcome, answer = await door(op, name, credential)
    # An error may echo the name it was asked for; that tells the client nothing new.
    return outcome, json.loads(json.dumps(answer).replace(name, "<name>"))


@database_sync_to_async
def written() -> tuple[int, int, int]:
    return Entry.objects.count(), Membership.objects.count(), MlRun.objects.count()


def _params():
    params = []
    for op, actor, expected in table.cells():
        bug = table.BUGS.get((op.name, op.door, actor))
        marks = [pytest.mark.xfail(strict=True, reason=f"bug: {bug}")] if bug else []
        params.append(
            pytest.param(op, actor, expected, id=f"{table.op_id(op)} / {actor}", marks=marks)
        )
    return params


@pytest.mark.parametrize(("op", "actor", "expected"), _params())
async def test_permission_matrix(world, op, actor, expected):
    before = await written()
    mlexec = op.door == "mlexec"
    outcome, answer = await perform(world, op, actor, PROJECT if mlexec else SESSION)
    assert outcome == expected, answer
    if expected != table.ALLOW and op.writes:
        assert await written() == before, "a refused request wrote something"
    if expected == table.NOT_FOUND:
        absent = await perform(world, op, actor, ABSENT_PROJECT if mlexec else ABSENT)
        assert absent == (outcome, answer), "a forbidden resource is told apart from an absent one"


def test_the_documented_matrix_is_the_tested_one():
    assert table.DOC.read_text() == table.render(), (
        "docs/permissions.md is stale: run `python -m tests.permission_matrix_table`"
    )
