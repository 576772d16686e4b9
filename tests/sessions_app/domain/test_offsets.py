import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessions_app.domain.errors import BadOffset
from sessions_app.domain.offsets import (
    MAX_SEQ,
    ReadFrom,
    format_offset,
    parse_offset,
    parse_start,
)

pytestmark = pytest.mark.engine_independent

seqs = st.integers(min_value=0, max_value=MAX_SEQ)


@given(seqs)
def test_an_offset_reads_back_as_itself(seq):
    assert parse_offset(format_offset(seq)) == seq


@given(seqs, seqs)
def test_string_order_is_offset_order(a, b):
    assert (format_offset(a) < format_offset(b)) == (a < b)


def test_offsets_have_the_durable_streams_shape():
    assert format_offset(0) == "0000000000000000_0000000000000000"
    assert format_offset(42) == "0000000000000000_0000000000000042"


def test_minus_one_is_the_beginning():
    assert parse_offset("-1") == 0


def test_offsets_far_beyond_any_stream_are_clamped_into_the_database_range():
    assert parse_offset("9999999999999999_9999999999999999") == MAX_SEQ


@pytest.mark.parametrize(
    "bad",
    ["", "42", 42, None, "0000000000000000-0000000000000042", "000000000000000a_0000000000000001",
     "0000000000000000_00000000000000421", "-2", "now ", "٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠_٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠١"],
)  # fmt: skip
def test_anything_else_is_a_bad_offset(bad):
    with pytest.raises(BadOffset):
        parse_offset(bad)


def test_start_positions():
    assert parse_start(None) == ReadFrom()
    assert parse_start("now") == ReadFrom(now=True)
    assert parse_start("snapshot") == ReadFrom(snapshot=True)
    assert parse_start(format_offset(7)) == ReadFrom(seq=7)
