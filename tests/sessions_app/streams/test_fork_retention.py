"""A Durable Streams fork made while retention compacts its source keeps what it inherits: the
fork locks its source's row until it commits, so compaction either ran before (and the fork
offset is refused as expired) or runs after and leaves the entries the fork reads."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.test import Client, override_settings
from django.urls import include, path

from sessions_app import log
from sessions_app.domain.offsets import format_offset
from sessions_app.models import Session
from sessions_app.streams import store

urlpatterns = [path("v1/stream/", include("sessions_app.streams.urls"))]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]
URL = "/v1/stream/"
PUBLIC = {"ANONYMOUS_STREAM_PREFIX": "public/", "LONG_POLL_TIMEOUT": 0.2, "SSE_MAX_SECONDS": 0.5}


@override_settings(SESSIONS_APP=PUBLIC)
def test_a_fork_made_while_its_source_is_compacted_keeps_its_inherited_bytes(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("two transactions at once: PostgreSQL (SQLite runs one writer at a time)")
    client = Client()
    assert client.put(URL + "public/p", data=b"abc", content_type="text/plain").status_code == 201
    for chunk in (b"def", b"ghi"):
        assert (
            client.post(URL + "public/p", data=chunk, content_type="text/plain").status_code == 204
        )
    source = Session.objects.get(name="public/p")
    insert, compacting = store._insert_stream, []

    def compact() -> None:
        try:
            log.compact(source.pk, 3)
        finally:
            connections.close_all()

    def insert_while_compacting(*args, **kwargs):  # retention starts between plan and insert
        compacting.append(threading.Thread(target=compact))
        compacting[0].start()
        compacting[0].join(timeout=2.0)  # it finishes at once unless the fork holds the source
        return insert(*args, **kwargs)

    monkeypatch.setattr(store, "_insert_stream", insert_while_compacting)
    made = client.put(URL + "public/f", content_type="text/plain", headers={
        "Stream-Forked-From": URL + "public/p", "Stream-Fork-Offset": format_offset(1)})  # fmt: skip
    compacting[0].join()
    assert made.status_code == 201
    read = client.get(URL + "public/f?offset=-1")
    assert (read.status_code, read.content) == (200, b"abc")
