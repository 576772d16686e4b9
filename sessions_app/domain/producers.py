"""Idempotent producers, after the Durable Streams rules.

A producer names itself with an id, an epoch and a sequence number per append. The server
keeps, per stream and producer id, the highest epoch and the last accepted sequence:

- a lower epoch is fenced off (a newer instance of the producer took over);
- a higher epoch starts a new sequence, which must begin at 0 (anything else is a malformed
  request, 400 on every door, as the Durable Streams protocol has it; a producer never seen
  before that does not start at 0 has a gap, 409);
- within the epoch, ``seq == last + 1`` is accepted, ``seq <= last`` is a retry of something
  that already landed (answered as a duplicate, nothing written), ``seq > last + 1`` is a gap.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sessions_app.domain.errors import BadRequest, ProducerSeqGap, ProducerStaleEpoch

MAX_ID_LENGTH = 128
MAX_NUMBER = 2**53 - 1  # what JavaScript clients can count to exactly


@dataclass(frozen=True)
class ProducerClaim:
    id: str
    epoch: int
    seq: int

    @classmethod
    def parse(cls, raw: object) -> ProducerClaim:
        if not isinstance(raw, dict):
            raise BadRequest("producer must be an object with id, epoch and seq")
        pid, epoch, seq = raw.get("id"), raw.get("epoch", 0), raw.get("seq")
        if not isinstance(pid, str) or not 0 < len(pid) <= MAX_ID_LENGTH or "\x00" in pid:
            raise BadRequest(
                f"producer.id must be a string of 1 to {MAX_ID_LENGTH} characters (no NUL)"
            )
        for name, value in (("epoch", epoch), ("seq", seq)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadRequest(f"producer.{name} must be an integer")
            if not 0 <= value <= MAX_NUMBER:
                raise BadRequest(f"producer.{name} must be between 0 and {MAX_NUMBER}")
        assert isinstance(epoch, int) and isinstance(seq, int)
        return cls(pid, epoch, seq)


@dataclass(frozen=True)
class ProducerState:
    epoch: int
    last_seq: int


class Verdict(enum.Enum):
    ACCEPT = "accept"
    DUPLICATE = "duplicate"


def judge(state: ProducerState | None, claim: ProducerClaim) -> Verdict:
    """Decide an append from ``claim`` given the stored ``state`` (None: never seen)."""
    if state is None:
        if claim.seq != 0:
            raise ProducerSeqGap(
                f"a new producer must start at seq 0, got {claim.seq}",
                expected_seq=0,
                received_seq=claim.seq,
            )
        return Verdict.ACCEPT
    if claim.epoch > state.epoch:
        if claim.seq != 0:
            raise BadRequest(
                f"a new producer epoch must start at seq 0, got {claim.seq}",
                expected_seq=0,
                received_seq=claim.seq,
            )
        return Verdict.ACCEPT
    if claim.epoch < state.epoch:
        raise ProducerStaleEpoch(
            f"producer epoch {claim.epoch} is older than the current epoch {state.epoch}",
            current_epoch=state.epoch,
        )
    if claim.seq <= state.last_seq:
        return Verdict.DUPLICATE
    if claim.seq == state.last_seq + 1:
        return Verdict.ACCEPT
    raise ProducerSeqGap(
        f"producer seq {claim.seq} skips ahead; expected {state.last_seq + 1}",
        expected_seq=state.last_seq + 1,
        received_seq=claim.seq,
    )


def advance(state: ProducerState | None, claim: ProducerClaim) -> ProducerState:
    """The stored state after accepting ``claim``."""
    return ProducerState(epoch=claim.epoch, last_seq=claim.seq)
