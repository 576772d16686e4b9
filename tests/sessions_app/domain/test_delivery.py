"""Delivery from lossy, reordered, repeated notifications ends exactly-once and in order."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions_app.domain.delivery import plan

pytestmark = pytest.mark.engine_independent


def run_subscriber(log, notifications, start=0):
    """Simulate a subscriber: ``log`` is the database; notifications are (first, last, carry)."""
    delivered, received = start, []
    for first, last, carry in notifications:
        step = plan(delivered, first, last, carry)
        if step.skip:
            continue
        if step.read_from_db:
            new = [seq for seq in log if delivered < seq <= step.up_to]
        else:
            new = list(range(first, last + 1))[step.start_index :]
        received.extend(new)
        delivered = step.up_to
    return received


batches = st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=30)


@given(batches, st.data())
@settings(max_examples=500)
def test_any_loss_reorder_or_repeat_of_notifications_delivers_a_gap_free_prefix(sizes, data):
    ranges, seq = [], 0
    for size in sizes:
        ranges.append((seq + 1, seq + size))
        seq += size
    log = list(range(1, seq + 1))
    shuffled = data.draw(st.permutations(ranges))
    kept = [r for r in shuffled if data.draw(st.booleans())]
    repeated = kept + data.draw(st.lists(st.sampled_from(kept), max_size=5)) if kept else []
    notes = [(first, last, data.draw(st.booleans())) for first, last in repeated]
    start = data.draw(st.integers(min_value=0, max_value=seq))
    received = run_subscriber(log, notes, start)
    # Exactly once, in order, no gap: a contiguous run right after the starting point...
    assert received == list(range(start + 1, start + 1 + len(received)))
    # ...reaching the highest offset any notification announced.
    announced = max((last for _, last, _ in notes), default=0)
    assert start + len(received) == max(start, announced)


def test_a_notification_overlapping_what_was_replayed_delivers_only_the_new_part():
    step = plan(delivered=7, first=5, last=9, carries_entries=True)
    assert (step.skip, step.read_from_db, step.start_index, step.up_to) == (False, False, 3, 9)


def test_a_notification_after_a_lost_one_reads_the_gap():
    step = plan(delivered=4, first=8, last=9, carries_entries=True)
    assert step.read_from_db and step.up_to == 9
