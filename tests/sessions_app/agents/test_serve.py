"""``serve.run`` (``run_agents``, ``demo_agent``): what start-up made is frozen out of the
garbage collector's sight before the worker serves. Without it the worker's first full
collection walked Django's and the frameworks' start-up objects while a turn waited: one
answer start in each worker's first few hundred took 85-100 ms against a p50 of 15 ms
(`python -m bench agents --parts a --messages 300`, bench/README.md)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from sessions_app.agents import serve

pytestmark = pytest.mark.engine_independent


async def handler(turn, run):
    await run.text("hi")


async def test_a_worker_freezes_its_start_up_objects_before_it_serves():
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        # Nothing listens on port 1: the worker keeps trying to connect until the timeout.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(serve.run("http://127.0.0.1:1", "dsk_k", {"a": handler}), 1)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
