"""Waiting for a stream to change, across worker processes.

A live reader joins the stream's groups on a fresh channel of the channel layer, *then* reads
the database, then waits: anything committed after the read is announced to the channel (the
log's ``log.entries`` after each commit, ``stream.changed`` on close and delete). A wake-up is
only a hint: the reader always reads the database again, so a lost, late or repeated
notification costs at most a timeout, never an entry, and nothing uncommitted is delivered.
"""

from __future__ import annotations

from sessions_app import log
from sessions_app.streams.store import change_group


class Waiter(log.Waiter):
    """The log's waiter, also woken when the stream is closed or deleted."""

    def __init__(self, session_pk: int) -> None:
        super().__init__(session_pk, change_group(session_pk))
