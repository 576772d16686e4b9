import json

import pytest

from sessions_app.domain.errors import BadEvent
from sessions_app.domain.events import encode_event, validate_event
from sessions_app.domain.jsonpatch import PatchError, apply_patch
from sessions_app.domain.limits import TokenBucket

pytestmark = pytest.mark.engine_independent


def test_a_valid_event_is_stored_with_the_server_time_and_without_empty_fields():
    event = validate_event(
        {"type": "TEXT_MESSAGE_CONTENT", "message": "m1", "data": {"delta": "hi"}}
    )
    assert json.loads(encode_event(event, 1234)) == {
        "type": "TEXT_MESSAGE_CONTENT", "message": "m1", "data": {"delta": "hi"}, "time": 1234,
    }  # fmt: skip


def test_the_client_cannot_set_the_server_time():
    event = validate_event({"type": "CUSTOM", "data": {"name": "x"}, "time": 1})
    assert json.loads(encode_event(event, 99))["time"] == 99


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (float("nan"), "NaN"),
        ("half an emoji \ud83d", "lone surrogate"),
        (_nested(100_000), "nested too deeply"),
    ],
)
def test_values_with_no_storable_json_form_are_refused(value, complaint):
    with pytest.raises(BadEvent, match=complaint):
        encode_event(validate_event({"type": "CUSTOM", "data": {"name": "x", "value": value}}), 1)


def test_a_whole_emoji_is_stored_as_utf8():
    emoji = json.loads('"\\ud83d\\ude00"')  # the pair of surrogates a JSON body carries
    event = validate_event({"type": "CUSTOM", "data": {"name": "x", "value": emoji}})
    assert json.loads(encode_event(event, 1).encode())["data"]["value"] == "\U0001f600"


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ([], "JSON object"),
        ({"type": "NOPE"}, "unknown event type"),
        ({"type": "CUSTOM", "data": {"name": "x"}, "offset": "1"}, "unknown event fields"),
        ({"type": "TEXT_MESSAGE_CONTENT", "data": {"delta": "x"}}, "needs 'message'"),
        ({"type": "TEXT_MESSAGE_CONTENT", "message": "m", "data": {"delta": 3}}, "data.delta"),
        ({"type": "TEXT_MESSAGE_START", "message": "m", "data": {"role": "king"}}, "data.role"),
        ({"type": "RUN_FINISHED", "run": "r", "data": {"outcome": "meh"}}, "data.outcome"),
        ({"type": "RUN_STARTED"}, "needs 'run'"),
        ({"type": "RUN_STARTED", "run": "r" * 129}, "1 to 128"),
        ({"type": "STATE_DELTA", "data": {"delta": {"op": "add"}}}, "JSON Patch"),
        ({"type": "CUSTOM", "data": "x"}, "'data' must be"),
    ],
)
def test_bad_events_are_refused_with_a_reason(raw, complaint):
    with pytest.raises(BadEvent, match=complaint):
        validate_event(raw)


def test_json_patch_operations():
    doc = {"a": {"b": [1, 2]}, "c": 1}
    patched = apply_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/1", "value": 9},
            {"op": "move", "from": "/c", "path": "/d"},
            {"op": "copy", "from": "/d", "path": "/e"},
            {"op": "test", "path": "/e", "value": 1},
            {"op": "replace", "path": "/a/b/0", "value": 0},
        ],
    )
    assert patched == {"a": {"b": [0, 9, 2]}, "d": 1, "e": 1}
    assert doc == {"a": {"b": [1, 2]}, "c": 1}  # the input is untouched


@pytest.mark.parametrize(
    "patch",
    [[{"op": "remove", "path": "/x"}], [{"op": "add", "path": "/a/5", "value": 1}],
     [{"op": "test", "path": "/a", "value": 0}], [{"op": "jump", "path": "/a"}], ["op"]],
)  # fmt: skip
def test_json_patch_refuses_what_does_not_apply(patch):
    with pytest.raises(PatchError):
        apply_patch({"a": []}, patch)


def test_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=10, burst=3)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.1) is True  # one token back after 1/rate seconds
    assert bucket.allow(0.1) is False
