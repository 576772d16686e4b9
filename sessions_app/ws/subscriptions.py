"""The subscriptions of one socket: replay from an offset, live delivery of what commits, and
catching up from the database when live delivery could not keep the order (a gap, a client
without room). The delivery rules (no gap, no duplicate, replay-then-live) live in
``domain.delivery`` and in the order of the steps in ``Subscriptions.add``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from channels.exceptions import StopConsumer

from sessions_app import dbexec, log, metrics
from sessions_app.conf import setting
from sessions_app.domain import delivery
from sessions_app.domain.errors import BadRequest, OffsetExpired, SessionError, Unavailable
from sessions_app.domain.offsets import SNAPSHOT, format_offset
from sessions_app.ws import lookups
from sessions_app.ws.flow import SHARED_FRAMES, Frames

logger = logging.getLogger(__name__)

GAP_RETRY_SECONDS = 1.0
# A replay reads at most this many bytes of entries at a time (and REPLAY_BATCH entries).
REPLAY_READ_BYTES = 1024 * 1024


@dataclass(slots=True)
class Subscription:
    name: str
    pk: int
    delivered: int = -1  # -1 until the replay has set the starting point
    behind: int = 0  # announced while the client was not keeping up: to read from the log
    # The session's presence clock when this socket joined (``presence.SessionView``): what
    # its list showed then is not told to it again.
    mark: int = 0


class Subscriptions:
    """One consumer's subscriptions, by session name (``subs``) and primary key (``by_pk``).

    Frames go out through ``consumer.send`` after ``consumer.flow`` has made room; a
    subscription that cannot go on ends through ``consumer.leave``.
    """

    __slots__ = ("by_pk", "catching_up", "consumer", "subs")

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.subs: dict[str, Subscription] = {}
        self.by_pk: dict[int, Subscription] = {}
        self.catching_up: asyncio.Task[None] | None = None

    async def add(self, name: str, pk: int, start: Any, frame_id: Any) -> Subscription:
        """Subscribe to session ``name`` from ``start``: replay, then ``caught_up``."""
        sub = Subscription(name, pk)
        self.subs[name], self.by_pk[pk] = sub, sub
        metrics.SUBSCRIPTIONS.inc()
        try:
            # Join the group before reading: anything committed from here on is either in what
            # we read or announced to us afterwards (notifications wait in our queue meanwhile).
            consumer = self.consumer
            await consumer.channel_layer.group_add(log.group_name(pk), consumer.channel_name)
            await self._start(sub, start, frame_id)
        except BaseException:
            await self.remove(sub)
            raise
        return sub

    async def remove(self, sub: Subscription) -> None:
        """Stop delivering ``sub`` and leave its session's group."""
        if self.subs.pop(sub.name, None) is not None:
            metrics.SUBSCRIPTIONS.dec()
        self.by_pk.pop(sub.pk, None)
        presence = getattr(self.consumer, "presence", None)
        if presence is not None:
            presence.forget(sub.name)
        try:
            consumer = self.consumer
            await consumer.channel_layer.group_discard(
                log.group_name(sub.pk), consumer.channel_name
            )
        except Exception:
            logger.warning("could not leave group of session %s", sub.pk, exc_info=True)

    async def _start(self, sub: Subscription, start: Any, frame_id: Any) -> None:
        if start.snapshot:
            state = await dbexec.run_read(log.fold_session, sub.pk)
            sub.delivered = state.seq
            await self.consumer.send_frame(
                {
                    "type": "snapshot",
                    "id": frame_id,
                    "session": sub.name,
                    "offset": format_offset(state.seq),
                    "state": state.as_dict(),
                }
            )
        else:
            # The first entries are read while the head is looked up (the range is checked
            # before any of them is sent).
            first = None if start.now else self._read_after(sub, start.seq)
            try:
                head, tail = await lookups.HEADS.ask(sub.pk)
            except BaseException:
                _drop(first)
                raise
            if start.now:
                sub.delivered = head
            elif start.seq < tail:
                _drop(first)
                raise OffsetExpired(
                    "entries at this offset were removed by retention; resume from the snapshot",
                    session=sub.name,
                    earliest=format_offset(tail),
                    resume=SNAPSHOT,
                )
            elif start.seq > head:
                _drop(first)
                raise BadRequest(
                    f"offset is beyond the head ({format_offset(head)})", session=sub.name
                )
            else:
                sub.delivered = start.seq
                if start.seq:
                    metrics.RESUMES.inc()
                await self.replay(sub, until=head, first=first)
        await self.consumer.send_frame(
            {
                "type": "caught_up",
                "id": frame_id,
                "session": sub.name,
                "offset": format_offset(sub.delivered),
            }
        )

    def _read_after(self, sub: Subscription, after: int) -> asyncio.Future[list[tuple[int, bytes]]]:
        read = lookups.READS.ask((sub.pk, after, setting("REPLAY_BATCH"), REPLAY_READ_BYTES))
        return asyncio.ensure_future(read)

    async def replay(
        self,
        sub: Subscription,
        until: int,
        first: asyncio.Future[list[tuple[int, bytes]]] | None = None,
    ) -> None:
        """Send entries ``sub.delivered + 1 .. until`` (``first``: the read of the first batch,
        already under way)."""
        if sub.delivered >= until:
            _drop(first)
            return
        reading: asyncio.Future[list[tuple[int, bytes]]] | None = first or self._read_after(
            sub, sub.delivered
        )
        try:
            while reading is not None:
                rows = await reading
                reading = None
                if not rows:
                    return
                if rows[-1][0] < until:  # read the next batch while this one is sent
                    reading = self._read_after(sub, rows[-1][0])
                metrics.REPLAYED.inc(len(rows))
                if rows[0][0] != sub.delivered + 1:  # retention removed entries while we read
                    raise OffsetExpired(
                        "entries at this offset were removed by retention; resume from the "
                        "snapshot",
                        session=sub.name,
                        earliest=format_offset(rows[0][0] - 1),
                        resume=SNAPSHOT,
                    )
                if self.subs.get(sub.name) is not sub:  # unsubscribed meanwhile
                    return
                for text, last, count in frames(sub, rows):
                    await self._send(sub, text, last, count)
        finally:
            _drop(reading)

    async def on_entries(self, message: dict[str, Any]) -> None:
        """A commit notification (``log.entries``): send what it holds, or read it later."""
        sub = self.by_pk.get(message["session"])
        consumer = self.consumer
        if sub is None or sub.delivered < 0 or consumer.flow.cut:
            return
        if self.catching_up is not None or consumer.flow.over_limit():
            # The client is not keeping up: remember how far the log has gone and drop the
            # bodies (they are in the database); they are read when it has room again.
            self._fall_behind(sub, message["last"])
            return
        bodies = message.get("bodies")
        step = delivery.plan(sub.delivered, message["first"], message["last"], bodies is not None)
        if step.skip:
            return
        if step.read_from_db:
            metrics.GAP_FILLS.inc()
            self._fall_behind(sub, step.up_to)
            return
        assert bodies is not None
        # Every subscriber of this session on this worker gets the same frames: build them once.
        # (The last body is in the key too: it carries the server's time, so a recreated
        # session that reuses the primary key can never be served another's frames.)
        key = (sub.pk, sub.delivered + 1, message["last"], bodies[-1])
        built = SHARED_FRAMES.get(key)
        if built is None:
            rows = list(enumerate(bodies[step.start_index :], start=sub.delivered + 1))
            built = SHARED_FRAMES.put(key, frames(sub, rows))
        for text, last, count in built:
            await self._send(sub, text, last, count)

    async def _send(self, sub: Subscription, text: str, last: int, count: int) -> None:
        consumer = self.consumer
        await consumer.flow.make_room()
        await consumer.send(text_data=text)
        sub.delivered = last
        metrics.DELIVERED.inc(count)

    def _fall_behind(self, sub: Subscription, last: int) -> None:
        sub.behind = max(sub.behind, last)
        if self.catching_up is None:
            self.catching_up = asyncio.create_task(self._catch_up())

    async def _catch_up(self) -> None:
        """Deliver from the log what was announced but not sent: gaps, and whatever arrived
        while the client had no room for it.

        It runs beside the consumer's message loop, so notifications keep being taken off the
        channel layer (their bodies dropped) instead of piling up in this worker while a slow
        client is waited for; it retries while the database is unreachable.
        """
        consumer = self.consumer
        try:
            while True:
                await consumer.flow.make_room()
                behind = [s for s in self.subs.values() if s.behind > s.delivered >= 0]
                if not behind:
                    return
                for sub in behind:
                    try:
                        await self.replay(sub, until=sub.behind)
                    except Unavailable:
                        await asyncio.sleep(GAP_RETRY_SECONDS)  # the entries are committed
                    except SessionError as exc:  # e.g. retention overtook this subscriber
                        await consumer.send_error(exc, None)
                        await consumer.leave(sub)
        except StopConsumer:
            pass  # cut as a slow consumer; the server's disconnect follows
        except Exception:
            logger.exception("catching up a subscriber failed")
        finally:
            self.catching_up = None


def frames(sub: Subscription, rows: list[tuple[int, Any]]) -> Frames:
    """``events`` frames (text, last offset, entries) holding ``rows``."""
    name = json.dumps(sub.name)
    limit = setting("MAX_EVENTS_FRAME_BYTES")
    built: Frames = []
    parts: list[str] = []
    size = 0
    for seq, body in rows:
        text = body.decode() if isinstance(body, bytes) else body
        parts.append(f'{{"offset":"{format_offset(seq)}",{text[1:]}')
        size += len(text)
        if size >= limit:
            built.append((_events_frame(name, parts), seq, len(parts)))
            parts, size = [], 0
    if parts:
        built.append((_events_frame(name, parts), rows[-1][0], len(parts)))
    return built


def _events_frame(name: str, parts: list[str]) -> str:
    events = ",".join(parts)
    return f'{{"type":"events","session":{name},"events":[{events}]}}'


def _drop(reading: asyncio.Future[Any] | None) -> None:
    """Forget a read that is not needed after all (and whatever it ends with)."""
    if reading is not None:
        reading.cancel()
        reading.add_done_callback(lambda f: f.cancelled() or f.exception())
