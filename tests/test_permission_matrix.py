"""Every operation against every actor, from one table (tests/permission_matrix_table.py).

Each cell is performed against the real apps (the demo site's URLs and WebSocket stack). A
``404`` cell must be indistinguishable from asking for something that does not exist (same
status, same body), a ``409`` from asking for a name reserved for the site; a refused write
must leave every table of both apps unchanged. The table is also docs/permissions.md, checked
here to be the table's rendering; and every route of the site and every WebSocket op must be
in the table (or exempt, with a reason), so a new one cannot escape the matrix.

The world (users, sessions, keys, projects, runs, jobs) is built once and shared by the
cells; a cell whose allowed call changes what the others would see (``disturbs``), or a cell
that failed, has it built afresh for the next one.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from django.test import AsyncClient, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse

from tests import permission_matrix_table as table

pytest.importorskip("mlexec_app")  # the matrix covers both apps: the demo site's settings
pytest.importorskip("channels")

from mlexec_app import keys as ml_keys  # noqa: E402
from mlexec_app import services as ml_services  # noqa: E402
from mlexec_app.models import CostModel, DiagnosticJob, Intervention, RunStatus  # noqa: E402
from sessions_app import dbexec, keys, log, services  # noqa: E402
from sessions_app.access import mint_token  # noqa: E402
from sessions_app.consumers import OPERATIONS as WS_OPERATIONS  # noqa: E402
from sessions_app.models import Membership, Session  # noqa: E402
from sessions_app.routing import websocket_application  # noqa: E402
from sessions_app.streams import views as stream_views  # noqa: E402

EVENT = {"type": "CUSTOM", "data": {"name": "probe", "value": 1}}
ABSENT_ID = 987654321  # no row has it
# Each placeholder of a request: the world's resource, and one that does not exist. A name
# that is someone else's is compared with a name reserved for the site (RESERVED_NAME_PREFIXES).
SESSION, ABSENT, RESERVED = "chat-1", "chat-0", "mlexec-job-0"
PROJECT, ABSENT_PROJECT = "cat-detector", "dog-detector"
PEOPLE = ("owner", "member", "other user")


@dataclass
class World:
    ids: dict[str, str] = field(default_factory=dict)  # placeholder -> the world's value
    tokens: dict[str, str] = field(default_factory=dict)
    session_keys: dict[str, str] = field(default_factory=dict)
    ml_keys: dict[str, str] = field(default_factory=dict)
    users: dict[str, Any] = field(default_factory=dict)  # owner, member, other user
    listed: dict[str, str] = field(default_factory=dict)  # what a list shows of the resource
    fresh: bool = True  # False: rebuild before the next cell


def _project(owner, name):
    return ml_services.create_project(
        owner, name=name, problem_statement="p", data_type="image",
        abstraction_layer="deep_learning", metric_name="error", target_value=0.02,
        human_level=0.01,
    )  # fmt: skip


LEARNING_CURVE = {
    "sizes": [100, 200, 400], "train_error": [0.1, 0.08, 0.07],
    "dev_error": [0.3, 0.25, 0.2], "verdict": "more data won't help", "fit": None,
}  # fmt: skip
BASELINE = {
    "errors": {"train": 0.12, "dev": 0.13},
    "misclassified": [{"index": 7777, "label": "cat", "predicted": "dog"}],
}  # fmt: skip
LABEL_ISSUES = {
    "issues": [{"index": 7777, "given": "cat", "suggested": "dog", "score": 0.9}],
    "image_shape": None,
}  # fmt: skip


def build_world() -> World:
    make = get_user_model().objects.create_user
    alice, bob, carol, dave = make("alice"), make("bob"), make("carol"), make("dave")
    chat = Session.objects.create(name=SESSION, owner=alice, title="Chat")
    Membership.objects.create(session=chat, user=bob)
    Membership.objects.create(session=chat, user=dave)  # the member the owner removes
    elsewhere = Session.objects.create(name="elsewhere", owner=alice)
    answer = {"message": "a1", "run": "r1"}  # an assistant message to rate (feedback)
    log.append_sync(services.request(chat.pk, [{"type": "RUN_STARTED", "run": "r1"},
        {"type": "TEXT_MESSAGE_START", **answer, "data": {"role": "assistant"}},
        {"type": "TEXT_MESSAGE_CONTENT", **answer, "data": {"delta": "hi"}}]))  # fmt: skip
    w = World(users={"owner": alice, "member": bob, "other user": carol})
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
    spare, _ = keys.create_key(alice, "spare", [chat])  # the key its owner revokes
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
    spare_ml, _ = ml_keys.create_api_key(alice, "spare", projects=[project])
    # Sized, and avoidably biased: the plan's next step is a hyperparameter search.
    ml_services.record_assessment(
        project, train_size=50_000, train_dev_size=10_000, dev_size=10_000, test_size=10_000
    )
    run = ml_services.record_run(
        project, name="baseline", status=RunStatus.RUNNING,
        history=[{"key": "loss", "value": 0.5, "step": 1}],
        metrics={"train": 0.12, "train_dev": 0.125, "dev": 0.13, "test": 0.13},
    )  # fmt: skip
    intervention = Intervention.objects.create(
        project=project, kind="data_quality", priority=1, rule_id="r", title="Fix labels"
    )
    CostModel.objects.create(
        project=project, llm_price_per_token=1e-5, tokens_per_call=500, calls_per_month=1e5,
        fine_tune_cost=1000, hosting_cost_per_month=300,
    )  # fmt: skip
    job = DiagnosticJob.objects.create(  # a finished job's row: nothing trains
        project=project, dataset="digits", diagnostics=["learning_curve", "label_issues"],
        status=RunStatus.FINISHED, fraction_done=1.0,
        result={"learning_curve": LEARNING_CURVE, "label_issues": LABEL_ISSUES,
                "baseline": BASELINE},
    )  # fmt: skip
    queued = DiagnosticJob.objects.create(project=project, dataset="digits", diagnostics=[])
    failed_search = DiagnosticJob.objects.create(
        project=project, dataset="digits", diagnostics=["search"], status=RunStatus.FAILED,
        params={"search": {"trials": 3, "timeout": 60}},
    )  # fmt: skip
    w.ids = {
        "name": SESSION, "ref": PROJECT, "run": str(run.pk), "intervention": str(intervention.pk),
        "job": str(job.pk), "queued_job": str(queued.pk), "search_job": str(failed_search.pk), "key": str(spare.pk),
        "mlkey": str(spare_ml.pk), "row": "7777",
    }  # fmt: skip
    w.listed = {"session": SESSION, "project": PROJECT, "key": spare.prefix,
                "mlkey": spare_ml.prefix}  # fmt: skip
    return w


ABSENT_IDS = {
    "name": ABSENT, "ref": ABSENT_PROJECT, "run": str(ABSENT_ID),
    "intervention": str(ABSENT_ID), "job": str(ABSENT_ID), "queued_job": str(ABSENT_ID),
    "search_job": str(ABSENT_ID),
    "key": str(ABSENT_ID), "mlkey": str(ABSENT_ID), "row": "7777",
}  # fmt: skip


# The mark makes pytest-django create the test database for this module alone too; the
# per-test handling it would add (a flush after every cell, which would empty the shared world)
# is switched off by the fixture below: the module's world manages the database (_worlds).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _django_db_marker():
    """Overrides pytest-django's fixture that implements the mark for each test."""


def _empty() -> None:
    """Delete every row a world or a cell made, in every app: the tables as a transactional
    test leaves them (a flush would do too, but it also empties and rebuilds the content types
    and permissions, seconds on PostgreSQL)."""
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed or model in (ContentType, Permission):
            continue
        model._base_manager.all().delete()


@pytest.fixture(scope="module")
def _worlds(django_db_setup, django_db_blocker):
    """One world for the module's cells (built on first use, afresh after a disturbing cell);
    the database is emptied at the end, as a transactional test leaves it."""
    holder: dict[str, World | None] = {"world": None}
    with django_db_blocker.unblock():
        yield holder
        dbexec.shutdown()
        _empty()
        # The connection of asgiref's thread (the views' sync_to_async) too: PostgreSQL
        # refuses to drop a test database that a connection still uses.
        asyncio.run(sync_to_async(connections.close_all)())


@pytest.fixture
def world(_worlds, django_db_blocker):
    with django_db_blocker.unblock():
        current = _worlds["world"]
        if current is None or not current.fresh:
            if current is not None:
                _empty()
            current = _worlds["world"] = build_world()
        current.fresh = False  # until the cell says it left the world as it found it
        yield current


# --- credentials -------------------------------------------------------------------------------


@dataclass
class Credential:
    bearer: str | None = None
    cookie_user: Any = None


def credential_for(world: World, actor: str, op: table.Operation) -> Credential:
    if actor == "anonymous":
        return Credential()
    if actor == "expired token":
        return Credential(world.tokens[actor])
    door = op.door
    mlexec = " /api/mlexec/" in op.call
    if door in ("key management", "pages") and actor in PEOPLE:
        return Credential(cookie_user=world.users[actor])
    if door == "mlexec" or (door in ("key management", "pages") and mlexec):
        return Credential(world.ml_keys[actor])
    if door in ("Durable Streams", "WebSocket") and actor in world.tokens:
        return Credential(world.tokens[actor])
    return Credential(world.session_keys[actor])


# --- performing one cell -----------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\{(\w+)\}")
COST = {"llm_price_per_token": 1e-5, "tokens_per_call": 500, "calls_per_month": 1e5,
        "fine_tune_cost": 1000, "hosting_cost_per_month": 300}  # fmt: skip


def new_id() -> str:
    return f"m-{uuid.uuid4().hex}"  # a message id is taken once per session


def body_of(op: table.Operation, ids: dict[str, str]) -> Any:
    name = ids["name"]
    return {
        "REST: create": {"title": "new"},
        "REST: publish": {"events": [EVENT]},
        "REST: send message": {"text": "hello"},
        "REST: cancel": {"run": "r1"},
        "REST: steer": {"run": "r1", "text": "shorter"},
        "REST: interrupt": {"text": "instead"},
        "REST: rate a message": {"message": "a1", "rating": "up"},
        "REST: start run": {},
        "REST: finish run": {"outcome": "success"},
        "REST: fail run": {"message": "it broke"},
        "REST: run heartbeat": {},
        "REST: manage members": {"username": "carol"},
        "REST: change session": {"title": "renamed"},
        "REST: claim turns": {"agents": ["assistant"], "worker": "w"},
        "REST: renew turns": {"worker": "w", "turns": [1, 2]},
        "REST: release turn": {"worker": "w", "turn": 1},
        "Durable Streams: create": b"[]",  # (an empty body would be sent with no type)
        "Durable Streams: append": [EVENT],
        "AG-UI / AI SDK: AG-UI run": {
            "threadId": name,
            "runId": "c1",
            "state": {},
            "tools": [],
            "context": [],
            "forwardedProps": {},
            "messages": [{"id": new_id(), "role": "user", "content": "hi"}],
        },
        "AG-UI / AI SDK: AG-UI cancel": {},
        "AG-UI / AI SDK: AI SDK chat": {
            "id": name,
            "trigger": "submit-message",
            "messages": [
                {"id": new_id(), "role": "user", "parts": [{"type": "text", "text": "hi"}]}
            ],
        },
        "mlexec: create project": {"name": "New one"},
        "mlexec: update project": {"problem_statement": "cats, and dogs"},
        "mlexec: record assessment": {"train_size": 1000, "dev_size": 100},
        "mlexec: log run": {"name": "probe"},
        "mlexec: update run": {"notes": "looked at it"},
        "mlexec: log batch": {"metrics": [{"key": "loss", "value": 0.4, "step": 2}]},
        "mlexec: record error analysis": {"categories": {"dark": 2}, "sample_size": 10},
        "mlexec: adopt interventions": {},
        "mlexec: update intervention": {"status": "in_progress"},
        "mlexec: cost curve": COST,
        "mlexec: save cost model": COST,
        "mlexec: start diagnostic job": {"dataset": "digits"},
        "mlexec: start search": {"dataset": "digits", "trials": 3, "time_budget": 60},
        "mlexec: resume search": {},
        "key management: create session key": {"name": "k", "sessions": [name]},
        "key management: create mlexec key": {"name": "k", "projects": [ids["ref"]]},
    }.get(table.op_id(op))


def http_request(op: table.Operation, ids: dict[str, str]) -> tuple[str, str, Any]:
    method, template = op.call.split(" ", 1)
    path = PLACEHOLDER.sub(lambda m: ids[m.group(1)], template)
    if op.name == "history long-poll":
        path += "?timeout=0.2"
    if op.door == "Durable Streams" and method == "GET":
        path += "?offset=-1"
    return method, path, body_of(op, ids)


FORMS = {  # what the pages' forms post
    "pages: label decision": {"verdict": "accept"},
    "pages: start search": {"dataset": "digits", "trials": "3", "time_budget": "60"},
    "pages: tag an error": {"category": "ambiguous"},
    "pages: add an error category": {"name": "blurry"},
}


def login_redirect(response) -> bool:
    """A page's answer to someone not signed in: a redirect to a login page."""
    where = response.get("Location", "").split("?")[0]
    return response.status_code == 302 and where in (settings.LOGIN_URL, reverse("chat:login"))


async def perform_http(op: table.Operation, ids: dict[str, str], credential: Credential):
    method, path, body = http_request(op, ids)
    headers = {"Authorization": f"Bearer {credential.bearer}"} if credential.bearer else {}
    client = AsyncClient()
    if credential.cookie_user is not None:
        await client.aforce_login(credential.cookie_user)
    call = getattr(client, method.lower())
    kwargs: dict[str, Any] = {"headers": headers}
    if table.op_id(op) in FORMS:
        kwargs["data"] = FORMS[table.op_id(op)]
    elif op.door == "Durable Streams" and method == "PUT":
        kwargs.update(data=body, content_type="application/json")
    elif body is not None:
        kwargs.update(data=json.dumps(body), content_type="application/json")
    jobs_wait = override_settings(
        # A started job is queued, not run: the matrix asks who may start one, not trains.
        TASKS={"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    )
    with jobs_wait:
        response = await call(path, **kwargs)
    status = response.status_code
    if response.streaming:  # an SSE door that opened: allowed; do not follow it
        await response.aclose() if hasattr(response, "aclose") else response.close()
        return table.ALLOW, None
    content = response.content.decode(errors="replace")  # an NPZ download is binary
    try:
        parsed: Any = json.loads(content)
    except ValueError:
        parsed = content
    if op.door == "pages" and login_redirect(response):
        return table.UNAUTHENTICATED, (status, response["Location"])
    outcome = table.ALLOW if status < 400 else str(status)
    return outcome, (status, parsed)


def ws_frames(op: table.Operation, ids: dict[str, str]) -> list[dict[str, Any]]:
    name = ids["name"]
    subscribed = {"op": "subscribe", "session": name, "after": "now"}
    frames = {
        "ping": [{"op": "ping"}],
        "subscribe": [{"op": "subscribe", "session": name, "after": "-1"}],
        "unsubscribe": [subscribed, {"op": "unsubscribe", "session": name}],
        "publish": [{"op": "publish", "session": name, "events": [EVENT]}],
        "send_message": [{"op": "send_message", "session": name, "text": "hello"}],
        "cancel": [{"op": "cancel", "session": name, "run": "r1"}],
        "steer": [{"op": "steer", "session": name, "run": "r1", "text": "shorter"}],
        "interrupt": [{"op": "interrupt", "session": name, "text": "instead"}],
        "heartbeat": [{"op": "heartbeat", "session": name, "run": "r1"}],
        "feedback": [{"op": "feedback", "session": name, "message": "a1", "rating": "up"}],
        "presence": [subscribed, {"op": "presence", "session": name}],
        "claim": [{"op": "claim", "agents": ["assistant"], "worker": "w"}],
        "stop_claim": [{"op": "stop_claim"}],
        "renew": [{"op": "renew", "worker": "w", "turns": [1, 2]}],
        "release": [{"op": "release", "worker": "w", "turn": 1}],
    }[table.ws_op(op)]
    return [{**frame, "id": i} for i, frame in enumerate(frames)]


# The communicator waits 1 s for a frame by default; a write under CI's load (two passes and
# the single-app runs on two cores) has taken longer (stop 34: send message / member).
WAIT = 10


async def perform_ws(op: table.Operation, ids: dict[str, str], credential: Credential):
    query, headers, bearer = "", [], credential.bearer
    if bearer and bearer.startswith("dsk_"):
        headers = [(b"authorization", f"Bearer {bearer}".encode())]
    elif bearer:
        query = f"?token={bearer}"
    ws = WebsocketCommunicator(websocket_application(), "/ws/sessions/" + query, headers=headers)
    connected, _ = await ws.connect()
    assert connected
    try:
        first = json.loads(await ws.receive_from(timeout=WAIT))
        if first["type"] == "error":
            closed = await ws.receive_output(timeout=WAIT)
            assert closed == {"type": "websocket.close", "code": 4401}, closed
            return table.UNAUTHENTICATED, first
        assert first["type"] == "hello", first
        reply: dict[str, Any] = {}
        for frame in ws_frames(op, ids):
            await ws.send_to(text_data=json.dumps(frame))
            while True:
                reply = json.loads(await ws.receive_from(timeout=WAIT))
                if reply.get("id") == frame["id"] and reply["type"] not in ("events",):
                    break
        if reply["type"] == "error":
            reply.pop("id")
            codes = {"not_found": table.NOT_FOUND, "forbidden": table.FORBIDDEN}
            return codes.get(reply["code"], reply["code"]), reply
        if reply["type"] == "heartbeat":
            assert reply["running"], reply  # the run is going: the heartbeat was taken
        return table.ALLOW, None
    finally:
        await ws.disconnect()


def _normalised(answer: Any, ids: dict[str, str]) -> str:
    """An error may echo the names and ids it was asked for; that tells the client nothing
    new, so they become their placeholders before two answers are compared."""
    text = json.dumps(answer)
    for placeholder, value in sorted(ids.items(), key=lambda kv: -len(kv[1])):
        if value.isdigit():  # an id: a number of its own, not a digit of another
            text = re.sub(rf"(?<![\w-]){value}(?![\w-])", f"<{placeholder}>", text)
        else:  # a name: wherever it is (in a URL's query too)
            text = text.replace(value, f"<{placeholder}>")
    return text


async def perform(world: World, op: table.Operation, actor: str, ids: dict[str, str]):
    credential = credential_for(world, actor, op)
    door = perform_ws if op.door == "WebSocket" else perform_http
    outcome, answer = await door(op, ids, credential)
    if outcome == table.ALLOW and op.call.split(" ")[0] == "GET" and _is_list(op):
        outcome = (
            table.ALLOW if world.listed[_is_list(op)] in json.dumps(answer) else table.UNLISTED
        )
    used = {k: v for k, v in ids.items() if k in ("name", "ref") or f"{{{k}}}" in op.call}
    return outcome, _normalised(answer, used)


def _is_list(op: table.Operation) -> str | None:
    """Which resource a list operation would name, or None if it is no list."""
    return {
        "REST: list": "session", "pages: chat list": "session", "mlexec: list projects": "project",
        "pages: mlexec projects": "project", "key management: session keys": "key",
        "key management: mlexec keys": "mlkey",
    }.get(table.op_id(op))  # fmt: skip


# What a refused write must leave alone: every row of both apps (and the users), except the
# moments a credential was last used, which an authenticated refusal may record.
VOLATILE = {"last_used_at", "last_login"}


@database_sync_to_async
def written() -> list[Any]:
    models = [*apps.get_app_config("sessions_app").get_models(),
              *apps.get_app_config("mlexec_app").get_models(), get_user_model()]  # fmt: skip
    rows = []
    for model in models:
        names = [f.attname for f in model._meta.concrete_fields if f.attname not in VOLATILE]
        rows.append((model.__name__, list(model.objects.order_by("pk").values_list(*names))))
    return rows


def _params():
    params = []
    for op, actor, expected in table.cells():
        bug = table.BUGS.get((op.name, op.door, actor))
        marks = [pytest.mark.xfail(strict=True, reason=f"bug: {bug}")] if bug else []
        params.append(
            pytest.param(op, actor, expected, id=f"{table.op_id(op)} / {actor}", marks=marks)
        )
    return params


NAMED_IN_BODY = {
    "AG-UI / AI SDK: AG-UI run",
    "AG-UI / AI SDK: AI SDK chat",
    "key management: create session key",
    "key management: create mlexec key",
}


def names_one(op: table.Operation, expected: str) -> bool:
    """Whether the request named a resource (else there is no absent one to compare with).
    A WebSocket that refused the credential closed before any frame named one."""
    if op.door == "WebSocket":
        return expected != table.UNAUTHENTICATED
    return bool(PLACEHOLDER.search(op.call)) or table.op_id(op) in NAMED_IN_BODY


@pytest.mark.parametrize(("op", "actor", "expected"), _params())
async def test_permission_matrix(world, op, actor, expected):
    before = await written() if op.writes and expected != table.ALLOW else None
    outcome, answer = await perform(world, op, actor, world.ids)
    assert outcome == expected, answer
    if before is not None:
        assert await written() == before, "a refused request wrote something"
    if expected in (table.NOT_FOUND, table.TAKEN, table.UNAUTHENTICATED) and names_one(
        op, expected
    ):
        # Asked for what does not exist (a taken name: for one reserved for the site). A
        # refusal before any lookup must not tell them apart either.
        other = {**ABSENT_IDS, "name": RESERVED} if expected == table.TAKEN else ABSENT_IDS
        absent = await perform(world, op, actor, other)
        assert absent == (outcome, answer), "a forbidden resource is told apart from an absent one"
    world.fresh = not (op.disturbs and expected == table.ALLOW)


def test_the_documented_matrix_is_the_tested_one():
    assert table.DOC.read_text() == table.render(), (
        "docs/permissions.md is stale: run `python -m tests.permission_matrix_table`"
    )


# --- nothing escapes the matrix ----------------------------------------------------------------


def methods_of(view: Any) -> set[str] | None:
    """The methods a view dispatches on, where it says (django-ninja, Durable Streams)."""
    if view is stream_views.stream_view:
        return set(stream_views.HANDLERS)
    if not inspect.isfunction(view):
        return None
    path_view = inspect.getclosurevars(view).nonlocals.get("self")
    if path_view is not None and hasattr(path_view, "operations"):
        return {method for operation in path_view.operations for method in operation.methods}
    return None


def site_routes() -> set[tuple[str, str]]:
    """(method, route) of every URL of the site outside admin/; "*" for any-method views."""
    found: set[tuple[str, str]] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if route != "admin/":
                    walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                methods = methods_of(pattern.callback) or {"*"}
                found.update((method, route) for method in methods)

    walk(get_resolver().url_patterns, "")
    return found


def table_routes() -> set[tuple[str, str]]:
    ids = dict(ABSENT_IDS)
    found = set()
    for op in table.OPERATIONS:
        if op.door == "WebSocket":
            continue
        method, path, _ = http_request(op, ids)
        match = resolve(path.split("?")[0])
        found.add((method if methods_of(match.func) else "*", match.route))
    return found


def test_every_route_is_in_the_matrix():
    routes, covered = site_routes(), table_routes()
    missing = sorted(routes - covered - set(table.EXEMPT))
    assert not missing, f"routes in neither the matrix nor EXEMPT: {missing}"
    stale = sorted(set(table.EXEMPT) - routes)
    assert not stale, f"EXEMPT names routes the site no longer has: {stale}"
    assert not covered & set(table.EXEMPT), "a route is both in the matrix and exempt"


def test_every_websocket_op_is_in_the_matrix():
    in_table = {table.ws_op(op) for op in table.OPERATIONS if op.door == "WebSocket"}
    assert in_table == set(WS_OPERATIONS)
