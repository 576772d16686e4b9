"""What a worker reuses for a moment: never past its time, never more than its size."""

from __future__ import annotations

import pytest

from sessions_app.domain.kept import Kept

pytestmark = pytest.mark.engine_independent


def test_a_value_is_given_back_until_its_time_is_up_and_then_never():
    kept: Kept[str, int] = Kept(seconds=1.0)
    kept.keep("a", 1, now=10.0)
    assert kept.get("a", now=10.0) == 1
    assert kept.get("a", now=10.999) == 1
    assert kept.get("a", now=11.0) is None  # exactly at the end: asked again
    assert kept.get("a", now=10.5) is None  # and an expired entry is gone, not revived
    assert len(kept) == 0


def test_keeping_again_restarts_the_time():
    kept: Kept[str, int] = Kept(seconds=1.0)
    kept.keep("a", 1, now=0.0)
    kept.keep("a", 2, now=0.8)
    assert kept.get("a", now=1.5) == 2


def test_the_least_recently_kept_go_first_past_the_size():
    kept: Kept[int, str] = Kept(seconds=60, size=3)
    for key in range(3):
        kept.keep(key, str(key), now=0)
    kept.keep(0, "0 again", now=1)  # 0 is now the most recent
    kept.keep(3, "3", now=2)
    assert kept.get(1, now=3) is None
    assert [kept.get(k, now=3) for k in (0, 2, 3)] == ["0 again", "2", "3"]
    assert len(kept) == 3


def test_forgotten_and_cleared_entries_are_asked_again():
    kept: Kept[str, int] = Kept(seconds=60)
    kept.keep("a", 1, now=0)
    kept.keep("b", 2, now=0)
    kept.forget("a")
    kept.forget("missing")  # no error
    assert kept.get("a", now=1) is None and kept.get("b", now=1) == 2
    kept.clear()
    assert kept.get("b", now=1) is None


@pytest.mark.parametrize(("seconds", "size"), [(-1, 10), (1, 0)])
def test_a_nonsense_size_or_time_is_refused(seconds, size):
    with pytest.raises(ValueError):
        Kept(seconds, size)
