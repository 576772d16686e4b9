import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessions_app.domain.errors import BadRequest, ProducerSeqGap, ProducerStaleEpoch
from sessions_app.domain.producers import (
    ProducerClaim,
    ProducerState,
    Verdict,
    advance,
    judge,
)

pytestmark = pytest.mark.engine_independent


def claim(seq, epoch=0):
    return ProducerClaim("agent-1", epoch, seq)


def test_a_new_producer_starts_at_zero():
    assert judge(None, claim(0)) is Verdict.ACCEPT
    with pytest.raises(ProducerSeqGap) as info:
        judge(None, claim(3))
    assert info.value.details["expected_seq"] == 0


def test_the_next_seq_is_accepted_and_a_retry_is_a_duplicate():
    state = ProducerState(epoch=0, last_seq=4)
    assert judge(state, claim(5)) is Verdict.ACCEPT
    assert judge(state, claim(4)) is Verdict.DUPLICATE
    assert judge(state, claim(0)) is Verdict.DUPLICATE


def test_a_gap_is_refused_with_the_expected_seq():
    with pytest.raises(ProducerSeqGap) as info:
        judge(ProducerState(0, 4), claim(7))
    assert info.value.details == {"expected_seq": 5, "received_seq": 7}


def test_an_older_epoch_is_fenced_off_and_a_newer_one_restarts_at_zero():
    state = ProducerState(epoch=2, last_seq=10)
    with pytest.raises(ProducerStaleEpoch):
        judge(state, claim(11, epoch=1))
    assert judge(state, claim(0, epoch=3)) is Verdict.ACCEPT
    # The Durable Streams rule: a new epoch not starting at 0 is malformed (400), not a gap.
    with pytest.raises(BadRequest) as info:
        judge(state, claim(11, epoch=3))
    assert not isinstance(info.value, ProducerSeqGap)


@given(st.lists(st.integers(min_value=0, max_value=12), max_size=60))
def test_any_retry_pattern_lands_each_seq_exactly_once(attempts):
    # A producer that sends seqs in any order with retries: what lands is 0..n in order.
    state, landed = None, []
    for seq in attempts:
        try:
            verdict = judge(state, claim(seq))
        except ProducerSeqGap:
            continue
        if verdict is Verdict.ACCEPT:
            landed.append(seq)
            state = advance(state, claim(seq))
    assert landed == list(range(len(landed)))


@pytest.mark.parametrize(
    "raw",
    [None, "p", {"epoch": 0, "seq": 0}, {"id": "", "seq": 0}, {"id": "p", "seq": -1},
     {"id": "p", "seq": True}, {"id": "p", "seq": 1.5}, {"id": "p" * 200, "seq": 0},
     {"id": "p", "epoch": "1", "seq": 0}, {"id": "p", "seq": 2**60}],
)  # fmt: skip
def test_malformed_producer_fields_are_refused(raw):
    with pytest.raises(BadRequest):
        ProducerClaim.parse(raw)
