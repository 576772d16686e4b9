"""Operators' endpoints and logs: health, readiness, Prometheus metrics, JSON log lines."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from django.test import AsyncClient, Client

from sessions_app.logs import JsonFormatter, RedactTokens
from tests.sessions_app.conftest import connect, text

pytestmark = pytest.mark.django_db(transaction=True)


def metric(body: str, name: str, labels: str = "") -> float:
    for line in body.splitlines():
        if (
            line.startswith(f"{name}{labels} ")
            or line.startswith(f"{name}{{")
            and labels
            and labels in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_health_answers():
    assert Client().get("/health").json() == {"status": "ok"}


async def test_ready_checks_the_database_and_the_channel_layer():
    reply = await AsyncClient().get("/ready")
    body = reply.json()
    assert reply.status_code == 200 and body["status"] == "ready"
    assert body["checks"]["database"]["ok"] and body["checks"]["channel_layer"]["ok"]


async def test_ready_reports_a_broken_channel_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}  # fmt: skip
    reply = await AsyncClient().get("/ready")
    assert reply.status_code == 503
    assert reply.json()["checks"]["channel_layer"]["ok"] is False


async def test_metrics_count_appends_deliveries_and_runs(alice, session, settings):
    settings.SESSIONS_APP = {"METRICS_ALLOWED_IPS": ["127.0.0.1"]}
    before = (await AsyncClient().get("/metrics")).content.decode()
    async with connect(alice) as writer, connect(alice) as reader:
        await reader.subscribe("chat-1")
        await writer.publish(
            "chat-1", [{"type": "RUN_STARTED", "run": "r1"}, text(delta="a"), text(delta="b")]
        )
        await reader.events(3)
    after = (await AsyncClient().get("/metrics")).content.decode()
    assert (
        metric(after, "sessions_entries_appended_total")
        - metric(before, "sessions_entries_appended_total")
        == 3
    )
    assert (
        metric(after, "sessions_entries_delivered_total")
        - metric(before, "sessions_entries_delivered_total")
        >= 3
    )
    assert 'sessions_runs{status="running"} 1.0' in after


async def test_metrics_count_durable_streams_appends_too(settings):
    settings.SESSIONS_APP = {
        "ANONYMOUS_STREAM_PREFIX": "public/",
        "METRICS_ALLOWED_IPS": ["::1", "127.0.0.0/8"],
    }
    client, url, json_type = AsyncClient(), "/v1/stream/public/metered", "application/json"
    assert (await client.put(url, data=b"[]", content_type=json_type)).status_code == 201
    before = (await client.get("/metrics")).content.decode()
    await client.post(url, data=b'[{"a":1},{"a":2}]', content_type=json_type)  # two entries
    await client.post(url, data=b'{"a":3}', content_type=json_type)
    await client.post(
        url, data=b'{"a":4}', content_type=json_type, headers={"Stream-Closed": "true"}
    )
    after = (await client.get("/metrics")).content.decode()
    appended = metric(after, "sessions_entries_appended_total") - metric(
        before, "sessions_entries_appended_total"
    )
    assert appended == 4
    commits = metric(after, "sessions_commit_seconds_count") - metric(
        before, "sessions_commit_seconds_count"
    )
    assert commits == 3


def test_metrics_can_be_protected_or_turned_off(settings):
    settings.SESSIONS_APP = {"METRICS_TOKEN": "s3cret"}
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    settings.SESSIONS_APP = {"METRICS_ENABLED": False}
    assert Client().get("/metrics").status_code == 404


def test_metrics_are_closed_unless_a_token_or_an_address_list_opens_them(settings):
    closed = Client().get("/metrics")
    assert (closed.status_code, closed.json()["code"]) == (403, "forbidden")
    assert b"sessions_" not in closed.content
    settings.SESSIONS_APP = {"METRICS_ALLOWED_IPS": ["10.0.0.0/8"]}
    assert Client().get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="192.168.1.5").status_code == 403
    settings.SESSIONS_APP = {"METRICS_ALLOWED_IPS": ["10.0.0.0/8"], "METRICS_TOKEN": "t"}
    assert Client().get("/metrics", REMOTE_ADDR="192.168.1.5").status_code == 401
    bearer = {"Authorization": "Bearer t"}
    assert Client().get("/metrics", REMOTE_ADDR="192.168.1.5", headers=bearer).status_code == 200


def test_a_non_ascii_metrics_token_is_refused_with_a_code(settings):
    settings.SESSIONS_APP = {"METRICS_TOKEN": "s3cret"}
    for given in ("Bearer é", "Bearer s3crét", "Bearer \u2603"):
        refused = Client().get("/metrics", headers={"Authorization": given})
        assert (refused.status_code, refused.json()["code"]) == (401, "unauthenticated")


def test_json_log_lines_carry_the_ids():
    record = logging.LogRecord(
        "sessions_app.log", logging.INFO, __file__, 1, "append refused: %s", ("closed",), None
    )
    record.session, record.run, record.producer, record.code = 7, "r1", "agent-1", "stream_closed"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "append refused: closed"
    assert (line["session"], line["run"], line["producer"], line["code"]) == (
        7,
        "r1",
        "agent-1",
        "stream_closed",
    )


def test_log_lines_never_carry_a_signed_token():
    line = '%s - "%s %s HTTP/%s" %d'
    args = ("127.0.0.1:5", "GET", "/ws/sessions/?after=1&token=abc.DEF:ghi", "1.1", 101)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, line, args, None)
    assert RedactTokens().filter(record)
    assert "/ws/sessions/?after=1&token=[redacted]" in record.getMessage()
    assert "abc.DEF" not in record.getMessage() and record.args[4] == 101
    raw = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /v1/s?token=T0K&x=1", (), None)
    assert json.loads(JsonFormatter().format(raw))["message"] == "GET /v1/s?token=[redacted]&x=1"


def test_a_servers_request_lines_piped_through_the_module_lose_their_tokens():
    """`make run` pipes daphne's access log (plain stdout) through `python -m sessions_app.logs`."""
    lines = '127.0.0.1:5 - - [06/Dec/2026:03:00:00] "GET /v1/stream/chat-1?offset=-1&token=abc.DEF:ghi" 200 9\n'
    done = subprocess.run(
        [sys.executable, "-m", "sessions_app.logs"], input=lines * 2, capture_output=True,
        text=True, timeout=30, check=True,
    )  # fmt: skip
    assert done.stdout == lines.replace("abc.DEF:ghi", "[redacted]") * 2
