"""The capacity bench reads SSE peers' tokens with bench.sse: pieces split anywhere still give
every event once, whole and in order (a token cut in half would count as lost)."""

import pytest

from bench.sse import SseReader

pytestmark = pytest.mark.engine_independent


def test_events_split_across_pieces_come_out_whole_and_in_order() -> None:
    text = (
        "event: stream-open\ndata:\n\n"
        ": keep-alive\n\n"
        'event: message\nid: chat:1\ndata: {"delta": "17 18 "}\n\n'
        'data: {"type":"text-delta","delta":"19 "}\r\n\r\n'
        "data: [DONE]\n\n"
    )
    for cut in range(1, len(text)):
        reader = SseReader()
        events = reader.feed(text[:cut]) + reader.feed(text[cut:])
        assert [(e.event, e.data, e.id) for e in events] == [
            ("stream-open", "", None),
            ("message", '{"delta": "17 18 "}', "chat:1"),
            ("message", '{"type":"text-delta","delta":"19 "}', None),
            ("message", "[DONE]", None),
        ]


def test_an_unfinished_event_waits_for_its_blank_line() -> None:
    reader = SseReader()
    assert reader.feed('data: {"delta": "1') == []
    assert reader.feed('7 "}\n') == []
    assert [e.data for e in reader.feed("\n")] == ['{"delta": "17 "}']
