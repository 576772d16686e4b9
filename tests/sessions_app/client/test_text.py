"""Long text is split into pieces the server accepts, never inside a character."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from sessions_app.client.text import json_size, split_text


def test_long_text_is_split_into_pieces_under_the_limit_that_join_to_the_text():
    text = 'é😀\n"\\\x01ab' * 5000
    pieces = split_text(text, 1000)
    assert "".join(pieces) == text
    assert all(0 < json_size(p) <= 1000 for p in pieces)
    assert all(len(json.dumps(p, ensure_ascii=False).encode()) - 2 <= 1000 for p in pieces)
    assert len(pieces) < 2 * json_size(text) / 1000 + 2  # not cut needlessly small


def test_short_text_stays_one_piece():
    assert split_text("hello", 16 * 1024) == ["hello"]
    assert split_text("", 16 * 1024) == [""]


@given(st.text(), st.integers(min_value=12, max_value=200))
def test_every_piece_fits_and_no_character_is_cut(text, limit):
    pieces = split_text(text, limit)
    assert "".join(pieces) == text
    assert all(json_size(p) <= limit for p in pieces)
    assert all(p for p in pieces) or pieces == [""]
