"""The log's one notifier: after a commit, a hint to the session's groups.

``log.entries`` (per session and batch, carrying the new entries, or only their range when
they are large) goes to ``group_name``; ``stream.changed`` (closed or deleted) goes to
``change_group``, kept apart because WebSocket consumers handle only the types they know. The
channel layer is at-most-once: subscribers read anything they missed from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer

from sessions_app.log.requests import AppendRequest, AppendResult

logger = logging.getLogger("sessions_app.log")

# Notifications carry the entries themselves up to this size; above it, only the range.
NOTIFY_INLINE_BYTES = 256 * 1024


def group_name(session_pk: int) -> str:
    return f"sessions_app.s{session_pk}"


def change_group(session_pk: int) -> str:
    """The group told when a stream closes or is deleted (entries go to ``group_name``)."""
    return f"sessions_app.ds{session_pk}"


@dataclass
class Notification:
    session_pk: int
    first: int
    last: int
    bodies: list[str | bytes] = field(default_factory=list)

    def message(self) -> dict[str, Any]:
        size = sum(len(b) for b in self.bodies)
        inline = size <= NOTIFY_INLINE_BYTES
        return {
            "type": "log.entries",
            "session": self.session_pk,
            "first": self.first,
            "last": self.last,
            "bodies": self.bodies if inline else None,
        }


@dataclass
class Notes:
    """What one commit tells: entries per session, and the sessions it closed."""

    entries: list[Notification] = field(default_factory=list)
    closed: set[int] = field(default_factory=set)
    wake: set[str] = field(default_factory=set)  # agent names with new turns for workers

    def __bool__(self) -> bool:
        return bool(self.entries or self.closed or self.wake)

    def extend(self, other: Notes) -> None:
        self.entries.extend(other.entries)
        self.closed |= other.closed
        self.wake |= other.wake


def notes_for(
    requests: Sequence[AppendRequest | None], results: Sequence[AppendResult | Exception]
) -> Notes:
    by_session: dict[int, Notification] = {}
    closed: set[int] = set()
    wake: set[str] = set()
    pairs = [
        (request, result)
        for request, result in zip(requests, results, strict=True)
        if request is not None and isinstance(result, AppendResult) and not result.duplicate
    ]
    for request, result in sorted(pairs, key=lambda rr: rr[1].first):
        if request.close:
            closed.add(request.session_pk)
        wake |= request.turn_wake
        if not result.wrote:
            continue
        note = by_session.get(request.session_pk)
        if note is None:
            note = by_session[request.session_pk] = Notification(
                request.session_pk, result.first, result.last
            )
        note.last = result.last
        note.bodies.extend(item.body for item in request.items)
    return Notes(list(by_session.values()), closed, wake)


async def notify(notes: Notes) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    sends = [(group_name(note.session_pk), note.message()) for note in notes.entries]
    if len(sends) < 2 or not await _publish_together(layer, sends):
        for group, message in sends:
            try:
                await layer.group_send(group, message)
            except Exception:  # the log is the truth: a lost hint is recovered by readers
                logger.warning("fan-out to %s failed", group, exc_info=True)
    await announce_change(notes.closed)
    if notes.wake:
        await wake_workers(notes.wake)


async def _publish_together(layer: Any, sends: list[tuple[str, dict[str, Any]]]) -> bool:
    """Publish a commit's notifications to their groups in one pipelined round trip per Redis
    shard when the layer is channels_redis' pub/sub layer (what ``group_send`` does for each,
    in the same order); False when it is another layer (the caller sends them one by one).

    A ``group_send`` per session cost about as much CPU as the server's delivery of the
    entries to its sockets (issue #25's profile: redis-py's per-command overhead), and a commit
    notifies every session it wrote to. This reaches into the layer's per-loop shards, which
    channels_redis 4 keeps as attributes; if they are not there, the layer's own
    ``group_send`` is used.
    """
    try:
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:  # pragma: no cover - channels_redis is a dependency of the site
        return False
    if not isinstance(layer, RedisPubSubChannelLayer):
        return False
    try:
        loop_layer = layer._get_layer()
        by_shard: dict[int, tuple[Any, list[tuple[str, bytes]]]] = {}
        for group, message in sends:
            channel = loop_layer._get_group_channel_name(group)
            shard = loop_layer._get_shard(channel)
            by_shard.setdefault(id(shard), (shard, []))[1].append(
                (channel, layer.serialize(message))
            )
        for shard, published in by_shard.values():
            async with shard._lock:
                shard._ensure_redis()
                pipe = shard._redis.pipeline(transaction=False)
                for channel, data in published:
                    pipe.publish(channel, data)
                await pipe.execute(raise_on_error=False)
    except AttributeError:
        logger.warning("channels_redis changed its internals: publishing one by one")
        return False
    except Exception:  # the log is the truth: lost hints are recovered by readers
        logger.warning("fan-out of %d sessions failed", len(sends), exc_info=True)
    return True


# Agent workers waiting for turns (``turns.claim`` long-polls) listen on this group.
TURNS_GROUP = "sessions_app.turns"


async def wake_workers(agents: Iterable[str]) -> None:
    """Tell waiting workers that turns for ``agents`` may be claimed (a hint: a claim reads
    the database, and waiting claims look again every few seconds anyway)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(TURNS_GROUP, {"type": "turns.available", "agents": sorted(agents)})
    except Exception:
        logger.warning("could not wake the agent workers", exc_info=True)


async def announce_change(pks: Iterable[int]) -> None:
    """Wake live readers of streams that closed or were deleted."""
    layer = get_channel_layer()
    if layer is None:
        return
    for pk in pks:
        try:
            await layer.group_send(change_group(pk), {"type": "stream.changed", "session": pk})
        except Exception:  # a lost hint: readers re-check the database on their timeout
            logger.warning("could not announce a change of stream %s", pk, exc_info=True)
