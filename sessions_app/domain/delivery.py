"""Exactly-once, in-order delivery to one subscriber from at-most-once notifications.

A subscriber remembers the last offset it delivered. A notification says "entries
``first..last`` were committed" and may carry them. Notifications can be lost, late, repeated
or out of order (the channel layer promises none of that), but offsets are allocated in
commit order, so when entry ``last`` is committed every entry below it is too: whatever is
missing below ``last`` can be read from the database.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """What to do with one notification."""

    skip: bool = False  # nothing new in it
    read_from_db: bool = False  # a gap before it, or it carried no entries: read after delivered
    start_index: int = 0  # otherwise: deliver the carried entries from this index on
    up_to: int = 0  # the offset delivery reaches


def plan(delivered: int, first: int, last: int, carries_entries: bool) -> Plan:
    """Decide how a subscriber at ``delivered`` handles a notification of ``first..last``."""
    if last <= delivered:
        return Plan(skip=True, up_to=delivered)
    if first > delivered + 1 or not carries_entries:
        return Plan(read_from_db=True, up_to=last)
    return Plan(start_index=delivered + 1 - first, up_to=last)
