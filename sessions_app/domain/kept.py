"""A small cache whose entries are kept a fixed time: what a worker may reuse for a moment.

Pure logic (no Django, no clock of its own: callers pass ``time.monotonic()``), used where a
door asks the database the same question for every request of a busy client: a stream's
lookup, a token user's activity. At most ``size`` entries; the least recently kept go first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Kept(Generic[K, V]):
    def __init__(self, seconds: float, size: int = 1024) -> None:
        if seconds < 0 or size < 1:
            raise ValueError("seconds must be >= 0 and size >= 1")
        self.seconds = seconds
        self.size = size
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        """The value kept for ``key``, or None when there is none or it is older than allowed."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        return entry[1]

    def keep(self, key: K, value: V, now: float) -> None:
        self._entries[key] = (now + self.seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
