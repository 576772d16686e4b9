"""Waiting for a stream to change, across worker processes.

A live reader joins the stream's groups on a fresh channel of the channel layer, *then* reads
the database, then waits: anything committed after the read is announced to the channel (the
log's ``log.entries`` after each commit, ``stream.changed`` on close and delete). A wake-up is
only a hint: the reader always reads the database again, so a lost, late or repeated
notification costs at most a timeout, never an entry, and nothing uncommitted is delivered.

A reader that loses its access (removed from the session, its user deactivated) is told the
same way (``access.changed``) and asked again at least every ``ACCESS_RECHECK_SECONDS``.
"""

from __future__ import annotations

from sessions_app import revocation
from sessions_app.access import Actor
from sessions_app.log import change_group
from sessions_app.streams import store


class Waiter(revocation.Waiter):
    """The log's waiter, also woken when the stream is closed or deleted, and when its
    reader's access changes (with a ``watch``)."""

    def __init__(self, session_pk: int, watch: revocation.Watch | None = None) -> None:
        super().__init__(session_pk, watch, change_group(session_pk))


def reader_watch(access: store.Access, name: str) -> revocation.Watch:
    """Whether the reader of ``name`` may still read it, judged as the door judges a request
    (``store.open_stream``; the door's bearer is a signed token, never an API key)."""

    def reach(actor: Actor, stream: str) -> None:
        store.open_stream(store.Access(actor, access.prefix), stream)

    return revocation.Watch(revocation.Grant(access.actor, login=access.login), name, reach)
