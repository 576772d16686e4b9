"""The database lookups of a subscribe, shared by the subscribes that arrive together on this
worker (``log.batches``): its access check, its session's head and tail, and the first read of
its replay. In a join storm (issue #25) they were one query each per socket, and the storm's
sockets waited on the reader threads' queries for most of it (a py-spy profile of 2,000
subscribes: ``access.get_session`` 33% of the samples, ``head_and_tail`` 14%, ``read`` 8%).
"""

from __future__ import annotations

from typing import Any

from sessions_app import access, log
from sessions_app.log.batches import Batcher

# (actor, session name) -> the session's primary key, or the NotFound ``get_session`` raises.
AUTHORIZE: Batcher[tuple[access.Actor, Any], int] = Batcher(
    access.sessions_for, lambda ask: access.get_session(*ask).pk
)
# session pk -> (head, tail)
HEADS: Batcher[int, tuple[int, int]] = Batcher(log.heads_and_tails, log.head_and_tail)
# (session pk, after, limit, max bytes) -> entries. Two calls at once: a replay's read may be
# long, and the sockets of other sessions should not wait for all of it.
READS: Batcher[tuple[int, int, int, int | None], list[tuple[int, bytes]]] = Batcher(
    log.read_many, calls=2
)


async def authorize(actor: access.Actor, name: object) -> int:
    """The primary key of session ``name`` if ``actor`` may read and publish to it (what
    ``access.get_session`` gives); NotFound otherwise."""
    return await AUTHORIZE.ask((actor, name))
