"""The log: the only code that writes or reads a session's entries, for every door.

Every door (WebSocket, REST, Durable Streams, AG-UI, AI SDK, the SDK, the job bridge) builds
one ``AppendRequest`` and hands it to ``append`` (async, through this event loop's group
committer) or ``append_sync`` (sync code). The modules:

requests   the request and result types (the Durable Streams fields are optional rules)
commit     the one commit: judging under the row lock, offsets, entries, runs, producers;
           the only module that inserts entries
committer  the one group committer, its metrics and log lines
executors  the writer thread and reader pool; ``lanes``: the event loop's own connection,
           the writer's strategy for a lone plain append
fanout     the one notifier (``log.entries`` and ``stream.changed`` after commit)
reads      reads, folded state, compaction; ``waiting``: waiting for commits, presence
batches    lookups of one event loop that arrive together, answered by one call

Offsets are allocated inside the transaction that stores the entries by advancing
``Session.head`` under the row's lock, so they follow commit order, and a unique constraint
backs them. Notifications are hints: subscribers read what they missed from the database
(see ``domain.delivery``).
"""

from sessions_app.log.commit import COPY_COLUMNS, STATE_KEY, commit, commit_isolated, seed
from sessions_app.log.committer import (
    GroupCommitter,
    append,
    append_queued,
    append_sync,
    committer,
)
from sessions_app.log.fanout import (
    NOTIFY_INLINE_BYTES,
    TURNS_GROUP,
    Notes,
    Notification,
    announce_change,
    change_group,
    group_name,
    notify,
    wake_workers,
)
from sessions_app.log.reads import (
    CHECKPOINT_ENTRIES,
    FOLD_BATCH,
    aread,
    compact,
    expired_offset,
    finished_sessions,
    fold_session,
    fold_sessions,
    head_and_tail,
    heads_and_tails,
    loads,
    now_ms,
    read,
    read_many,
)
from sessions_app.log.requests import AppendRequest, AppendResult, Deferred, Item, Locked
from sessions_app.log.waiting import Waiter

__all__ = [
    "CHECKPOINT_ENTRIES",
    "COPY_COLUMNS",
    "FOLD_BATCH",
    "NOTIFY_INLINE_BYTES",
    "STATE_KEY",
    "TURNS_GROUP",
    "AppendRequest",
    "AppendResult",
    "Deferred",
    "GroupCommitter",
    "Item",
    "Locked",
    "Notes",
    "Notification",
    "Waiter",
    "announce_change",
    "append",
    "append_queued",
    "append_sync",
    "aread",
    "change_group",
    "commit",
    "commit_isolated",
    "committer",
    "compact",
    "expired_offset",
    "finished_sessions",
    "fold_session",
    "fold_sessions",
    "group_name",
    "head_and_tail",
    "heads_and_tails",
    "loads",
    "notify",
    "wake_workers",
    "now_ms",
    "read",
    "read_many",
    "seed",
]
