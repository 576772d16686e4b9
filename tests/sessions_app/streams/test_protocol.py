"""The Durable Streams wire helpers, without a server: what a client would misread if wrong."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessions_app.domain.errors import BadRequest
from sessions_app.streams import protocol


def parse_sse(text: str) -> list[tuple[str, str]]:
    """Events as an EventSource parser sees them: (event name, data lines joined by \\n)."""
    events = []
    for block in text.split("\n\n")[:-1]:
        name, data = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            if field == "event":
                name = value.lstrip(" ")
            elif field == "data":
                data.append(value)
        events.append((name, "\n".join(data)))
    return events


@given(st.text())
def test_no_payload_can_inject_an_sse_event(payload):
    events = parse_sse(protocol.sse_event("data", payload))
    assert [name for name, _ in events] == ["data"]
    # line breaks are normalised to \n, as EventSource does; the text survives
    assert events[0][1] == payload.replace("\r\n", "\n").replace("\r", "\n")


def test_binary_streams_go_as_padded_base64_and_json_as_one_array():
    binary = parse_sse(protocol.sse_data("application/x-protobuf", [b"\x00\xff", b"a"]))
    assert binary == [("data", "AP9h")]
    assert not protocol.is_text("application/octet-stream")
    array = parse_sse(protocol.sse_data("application/json", [b'{"a":1}', b"[1,2]"]))
    assert json.loads(array[0][1]) == [{"a": 1}, [1, 2]]


def test_a_cursor_echoed_back_always_comes_back_larger():
    now = 1_800_000_000.0
    current = protocol.next_cursor(None, now)
    for _ in range(50):
        assert int(protocol.next_cursor(current, now)) > int(current)
    assert protocol.next_cursor("0", now) == current  # an old cursor gets the current one


@pytest.mark.parametrize(
    ("body", "messages"),
    [
        (b'{"a":1}', [{"a": 1}]),
        (b'[{"a":1},{"b":2}]', [{"a": 1}, {"b": 2}]),
        (b"[[1,2],[3,4]]", [[1, 2], [3, 4]]),
        (b"[[[1,2,3]]]", [[[1, 2, 3]]]),
    ],
)
def test_json_bodies_are_flattened_exactly_one_level(body, messages):
    assert protocol.json_items(body, allow_empty=False) == messages


@pytest.mark.parametrize("body", [b"[]", b"{", b"NaN", b"\xff"])
def test_bodies_that_append_nothing_or_are_not_json_are_refused(body):
    with pytest.raises(BadRequest):
        protocol.json_items(body, allow_empty=False)


@pytest.mark.parametrize("raw", ["abc", "-1", "00060", "+60", "60.5", "1e3", str(2**31)])
def test_ttl_must_be_plain_whole_seconds(raw):
    with pytest.raises(BadRequest, match="Stream-TTL"):
        protocol.parse_ttl(raw)


@pytest.mark.parametrize(
    "values", [[""], ["a", "b"], ["../x"], ["1_x"], ["\n"], ["9999999999999999_9999999999999999/"]]
)
def test_bad_offsets_are_refused(values):
    with pytest.raises(BadRequest):
        protocol.parse_start(values)


def test_producer_headers_come_all_together_or_not_at_all():
    assert protocol.parse_producer(None, None, None) is None
    assert protocol.parse_producer("p", "1", "0").epoch == 1
    for headers in [("p", "1", None), ("", "0", "0"), ("p", "0xyz", "0"), ("p", "0", "-1")]:
        with pytest.raises(BadRequest):
            protocol.parse_producer(*headers)
