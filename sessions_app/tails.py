"""A safety net under the fan-out: catch subscribers up when a notification never came.

Notifications are hints (the channel layer may drop them: a full channel, a Redis restart).
A subscriber that missed one catches up at the next notification of its session; if the lost
one was the last, there is no next one. So every worker checks, once a second and in one
query, the heads of the sessions its sockets follow, and nudges any subscription that is
behind with a hint that makes it read the gap from the database.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from sessions_app import dbexec
from sessions_app.models import Session

logger = logging.getLogger(__name__)
CHECK_SECONDS = 1.0

_followers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakSet[Any]] = (
    weakref.WeakKeyDictionary()
)
_tasks: set[asyncio.Task[None]] = set()


def follow(consumer: Any) -> None:
    """Watch ``consumer``'s subscriptions (``subscriptions.by_pk``, ``channel_layer``,
    ``channel_name``)."""
    loop = asyncio.get_running_loop()
    if loop not in _followers:
        _followers[loop] = weakref.WeakSet()
        task = loop.create_task(_watch(loop))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    _followers[loop].add(consumer)


def heads(pks: list[int]) -> dict[int, int]:
    return dict(Session.objects.filter(pk__in=pks).values_list("pk", "head"))


async def check(loop: asyncio.AbstractEventLoop) -> int:
    """Nudge every subscription of this loop that is behind its session's head; return how many."""
    consumers = list(_followers.get(loop, ()))
    wanted = {
        pk for c in consumers for pk, sub in c.subscriptions.by_pk.items() if sub.delivered >= 0
    }
    if not wanted:
        return 0
    current = await dbexec.run_read(heads, sorted(wanted))
    nudged = 0
    for consumer in consumers:
        for pk, sub in list(consumer.subscriptions.by_pk.items()):
            head = current.get(pk, 0)
            if 0 <= sub.delivered < head:
                hint = {
                    "type": "log.entries",
                    "session": pk,
                    "first": head,
                    "last": head,
                    "bodies": None,
                }
                await consumer.channel_layer.send(consumer.channel_name, hint)
                nudged += 1
    return nudged


async def _watch(loop: asyncio.AbstractEventLoop) -> None:
    while True:
        await asyncio.sleep(CHECK_SECONDS)
        try:
            await check(loop)
        except Exception:  # a database outage passes; the next check will catch up
            logger.debug("tail check failed", exc_info=True)
