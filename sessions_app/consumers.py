"""The WebSocket door onto the log: one socket, many sessions (frames: docs/sessions/websocket.md).

The consumer parses frames, asks the access layer and the log service, and sends frames. The
delivery rules (no gap, no duplicate, replay-then-live) live in ``domain.delivery`` and in the
order of the steps in ``_subscribe``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from sessions_app import dbexec, log, metrics, revocation, runs, services, tails, watchdog
from sessions_app.access import Actor, get_session
from sessions_app.backpressure import buffered_bytes, send_may_block
from sessions_app.conf import setting
from sessions_app.domain import control, delivery
from sessions_app.domain.errors import (
    BadRequest,
    Conflict,
    LimitExceeded,
    NotFound,
    OffsetExpired,
    SessionError,
    Unavailable,
)
from sessions_app.domain.limits import TokenBucket
from sessions_app.domain.offsets import BEGINNING, SNAPSHOT, format_offset, parse_start

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_SLOW_CONSUMER = 4008
AUTH_CACHE_SECONDS = 5.0
GAP_RETRY_SECONDS = 1.0
DRAIN_POLL_SECONDS = 0.02
# Publishes of one socket queued for commit before it waits for the oldest to commit.
MAX_PUBLISHES_IN_FLIGHT = 16


class Device(dict[str, Any]):
    """A device as presence knows it (id, user, label): one shared copy per worker."""

    __slots__ = ("__weakref__",)


# Every socket of a session keeps the others' devices; with this table, a worker holds each
# device once however many of its sockets know it (20 sockets in a session: 8 KB less each).
_DEVICES: weakref.WeakValueDictionary[tuple[Any, ...], Device] = weakref.WeakValueDictionary()


def _shared(device: dict[str, Any]) -> Device:
    try:
        key = tuple(sorted(device.items()))
        known = _DEVICES.get(key)
    except TypeError:  # not ours (a value that does not hash): kept, not shared
        return Device(device)
    if known is None:
        known = _DEVICES[key] = Device(device)
    return known


# A replay reads at most this many bytes of entries at a time (and REPLAY_BATCH entries).
REPLAY_READ_BYTES = 1024 * 1024


@dataclass
class Subscription:
    name: str
    pk: int
    delivered: int = -1  # -1 until the replay has set the starting point
    behind: int = 0  # announced while the client was not keeping up: to read from the log


class SessionConsumer(AsyncWebsocketConsumer):
    """Multiplexes subscriptions, publishing and presence for one client connection."""

    async def connect(self) -> None:
        self.actor = Actor(self.scope.get("user"), self.scope.get("session_scope"))
        self.subs: dict[str, Subscription] = {}
        self.by_pk: dict[int, Subscription] = {}
        self.authorized: dict[str, tuple[int, float]] = {}
        self.bucket = TokenBucket(setting("MAX_FRAMES_PER_SECOND"), setting("FRAME_BURST"))
        # session name -> the other devices attached: id -> (device, when last heard of)
        self.presence: dict[str, dict[str, tuple[Device, float]]] = {}
        self.heartbeat: asyncio.Task[None] | None = None
        self.catching_up: asyncio.Task[None] | None = None
        self.in_flight: set[asyncio.Task[None]] = set()  # publishes waiting for their commit
        self.cut = False
        # A server whose send waits for the client (uvicorn does, daphne buffers instead) gets
        # the same patience per send as a backlog gets in _make_room.
        self.send_patience = (
            setting("SLOW_CONSUMER_TIMEOUT") if send_may_block(self.base_send) else None
        )
        await self.accept()
        metrics.SOCKETS.inc()
        self.counted = True
        watchdog.ensure_running()
        tails.follow(self)
        if not self.actor.authenticated:
            await self._send(
                {"type": "error", "code": "unauthenticated", "message": "log in first"}
            )
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.device = {
            "id": self._device_id(),
            "user": self.actor.user.get_username(),
            "label": self._query("label")[:80],
        }
        # Revocation (a removed member, a revoked key, a deactivated user) reaches this
        # socket through its user's group at once, and through a periodic re-check anyway.
        self.grant: revocation.Grant | None = revocation.socket_grant(self.scope, self.actor)
        self.user_group: str | None = revocation.user_group(self.actor.user.pk)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        revocation.follow(self)
        await self._send(
            {"type": "hello", "device": self.device["id"], "user": self.device["user"]}
        )

    async def disconnect(self, code: int) -> None:
        if getattr(self, "counted", False):
            metrics.SOCKETS.dec()
            self.counted = False
        await self._stop_asking()
        for task in (
            getattr(self, "heartbeat", None),
            getattr(self, "catching_up", None),
            *getattr(self, "in_flight", ()),
        ):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        for sub in list(getattr(self, "subs", {}).values()):
            await self._leave(sub)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch first closes stale ORM connections of its thread-sensitive
        # executor: a thread hop before every message, 10% of a busy worker's time. This
        # consumer never uses that executor (its database work runs on dbexec's threads,
        # which look after their own connections), so it goes straight to the handler.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    # --- client frames -------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame_id = None
        try:
            if not self.actor.authenticated:
                return
            raw = text_data if text_data is not None else (bytes_data or b"")
            if len(raw) > setting("MAX_FRAME_BYTES"):
                raise LimitExceeded(
                    f"frame larger than {setting('MAX_FRAME_BYTES')} bytes", limit="frame_bytes"
                )
            frame = _parse(raw)
            frame_id = frame.get("id")
            if not self.bucket.allow(time.monotonic()):
                raise LimitExceeded("too many frames; slow down", limit="frames_per_second")
            handler = OPERATIONS.get(frame.get("op"))  # type: ignore[arg-type]
            if handler is None:
                raise BadRequest(f"unknown op {frame.get('op')!r}", known=sorted(OPERATIONS))
            if self.in_flight and handler is not SessionConsumer.op_publish:
                # A socket's frames take effect in order: what it published is committed
                # before anything else it asked for is looked at.
                await asyncio.wait(self.in_flight)
            await handler(self, frame)
        except SessionError as exc:
            await self._send_error(exc, frame_id)
        except StopConsumer:
            raise
        except Exception:  # a bad frame must never take the connection's subscriptions down
            logger.exception("unexpected error handling a frame")
            await self._send(
                {"type": "error", "id": frame_id, "code": "internal", "message": "internal error"}
            )

    async def op_ping(self, frame: dict[str, Any]) -> None:
        await self._send({"type": "pong", "id": frame.get("id")})

    async def op_subscribe(self, frame: dict[str, Any]) -> None:
        name = frame.get("session")
        start = parse_start(frame.get("after", BEGINNING))
        if isinstance(name, str) and name in self.subs:
            raise Conflict("already subscribed to this session", session=name)
        if len(self.subs) >= setting("MAX_SUBSCRIPTIONS_PER_CONNECTION"):
            raise LimitExceeded("too many subscriptions on this connection", limit="subscriptions")
        pk = await self._authorize(name)
        assert isinstance(name, str)
        sub = Subscription(name, pk)
        self.subs[name], self.by_pk[pk] = sub, sub
        metrics.SUBSCRIPTIONS.inc()
        try:
            # Join the group before reading: anything committed from here on is either in what
            # we read or announced to us afterwards (notifications wait in our queue meanwhile).
            await self.channel_layer.group_add(log.group_name(pk), self.channel_name)
            await self._start(sub, start, frame.get("id"))
        except BaseException:
            await self._forget(sub)
            raise
        await self._join_presence(sub)
        logger.info(
            "subscribed",
            extra={"session": name, "device": self.device["id"], "offset": sub.delivered},
        )

    async def _start(self, sub: Subscription, start: Any, frame_id: Any) -> None:
        if start.snapshot:
            state = await dbexec.run_read(log.fold_session, sub.pk)
            sub.delivered = state.seq
            await self._send(
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
                head, tail = await dbexec.run_read(log.head_and_tail, sub.pk)
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
                await self._replay(sub, until=head, first=first)
        await self._send(
            {
                "type": "caught_up",
                "id": frame_id,
                "session": sub.name,
                "offset": format_offset(sub.delivered),
            }
        )

    def _read_after(self, sub: Subscription, after: int) -> asyncio.Future[list[tuple[int, bytes]]]:
        read = log.aread(sub.pk, after, setting("REPLAY_BATCH"), REPLAY_READ_BYTES)
        return asyncio.ensure_future(read)

    async def _replay(
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
                await self._deliver(sub, rows)
        finally:
            _drop(reading)

    async def op_unsubscribe(self, frame: dict[str, Any]) -> None:
        sub = self.subs.get(frame.get("session"))  # type: ignore[arg-type]
        if sub is None:
            raise NotFound("not subscribed to this session")
        await self._leave(sub)
        await self._send({"type": "unsubscribed", "id": frame.get("id"), "session": sub.name})

    async def op_publish(self, frame: dict[str, Any]) -> None:
        # Publishes are pipelined: the append is queued here, in frame order, and acknowledged
        # when it commits, while the next frames are read; so one socket's publishes share a
        # group commit instead of taking one each.
        append = services.request(0, frame.get("events"), frame.get("producer"))
        name = frame.get("session")
        append.session_pk = await self._authorize(name)
        if len(self.in_flight) >= MAX_PUBLISHES_IN_FLIGHT:
            await asyncio.wait(self.in_flight, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(self._ack(frame.get("id"), name, log.append_queued(append)))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _ack(
        self, frame_id: Any, name: Any, committed: asyncio.Future[log.AppendResult | SessionError]
    ) -> None:
        try:
            outcome = await committed
            if isinstance(outcome, SessionError):
                await self._send_error(outcome, frame_id)
            else:
                ack = services.ack(outcome)
                await self._send({"type": "ack", "id": frame_id, "session": name, **ack})
        except Exception:  # e.g. the client went away meanwhile; the append stands
            logger.warning("could not acknowledge publish %r", frame_id, exc_info=True)

    # A device's writing frames may carry a ``producer`` like a publish, so a frame re-sent
    # after a reconnect lands once and its repeat gets the same ack; with a client-chosen
    # ``message`` id, that ack names the message that landed.

    async def op_send_message(self, frame: dict[str, Any]) -> None:
        message, events = control.user_message(frame.get("text"), frame.get("message"))
        append = services.request(0, events, frame.get("producer"))
        await self._append(frame, append, message=message)

    async def op_cancel(self, frame: dict[str, Any]) -> None:
        events = control.cancel(frame.get("run"), frame.get("reason"))
        await self._append(frame, services.request(0, events, frame.get("producer")))

    async def op_steer(self, frame: dict[str, Any]) -> None:
        events = control.steer(frame.get("run"), frame.get("text"))
        await self._append(frame, services.request(0, events, frame.get("producer")))

    async def op_interrupt(self, frame: dict[str, Any]) -> None:
        run, text, wanted = frame.get("run"), frame.get("text"), frame.get("message")
        message, events = control.interrupt(run, text, wanted)
        append = services.request(0, events, frame.get("producer"))
        await self._append(frame, append, message=message)

    async def op_heartbeat(self, frame: dict[str, Any]) -> None:
        pk = await self._authorize(frame.get("session"))
        alive = await dbexec.run_write(runs.heartbeat, pk, frame.get("run"))
        await self._send(
            {"type": "heartbeat", "id": frame.get("id"), "run": frame.get("run"), "running": alive}
        )

    async def _append(self, frame: dict[str, Any], append: log.AppendRequest, **extra: Any) -> None:
        name = frame.get("session")
        append.session_pk = await self._authorize(name)
        result = await log.append(append)
        await self._send(
            {"type": "ack", "id": frame.get("id"), "session": name, **services.ack(result), **extra}
        )

    async def op_presence(self, frame: dict[str, Any]) -> None:
        sub = self.subs.get(frame.get("session"))  # type: ignore[arg-type]
        if sub is None:
            raise NotFound("subscribe to the session first")
        await self._send_presence(sub, frame.get("id"))

    # --- layer messages ------------------------------------------------------------------

    async def access_changed(self, message: dict[str, Any]) -> None:
        """The user's access changed somewhere (revocation.notify): ask again now."""
        if getattr(self, "grant", None) is None:
            return
        names = list(self.subs)
        actor, allowed = await dbexec.run_read(revocation.reachable, self.grant, names)
        await self.access_checked(actor, names, allowed)

    async def access_checked(self, actor: Actor, names: list[str], allowed: set[str]) -> None:
        """Act on a fresh answer to who this socket is and which of ``names`` it may still
        reach: a subscription it lost ends with a ``not_found`` error naming the session; a
        credential that no longer authenticates closes the socket with 4401."""
        self.actor = actor
        self.authorized.clear()
        if not actor.authenticated:
            await self._stop_asking()
            for sub in list(self.subs.values()):
                await self._leave(sub)
            await self._send(
                {"type": "error", "code": "unauthenticated",
                 "message": "this connection's key or user is no longer valid"}
            )  # fmt: skip
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        for name in names:
            lost = self.subs.get(name)
            if lost is not None and name not in allowed:
                await self._leave(lost)
                await self._send_error(NotFound("no such session", session=name), None)

    async def log_entries(self, message: dict[str, Any]) -> None:
        sub = self.by_pk.get(message["session"])
        if sub is None or sub.delivered < 0 or self.cut:
            return
        if self.catching_up is not None or self._over_limit():
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
        frames = _SHARED_FRAMES.get(key)
        if frames is None:
            rows = list(enumerate(bodies[step.start_index :], start=sub.delivered + 1))
            frames = _SHARED_FRAMES.put(key, self._frames(sub, rows))
        for text, last, count in frames:
            await self._send_frame(sub, text, last, count)

    def _over_limit(self) -> bool:
        queued = buffered_bytes(self.base_send)
        return queued is not None and queued > setting("MAX_BUFFERED_BYTES")

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
        try:
            while True:
                await self._make_room()
                behind = [s for s in self.subs.values() if s.behind > s.delivered >= 0]
                if not behind:
                    return
                for sub in behind:
                    try:
                        await self._replay(sub, until=sub.behind)
                    except Unavailable:
                        await asyncio.sleep(GAP_RETRY_SECONDS)  # the entries are committed
                    except SessionError as exc:  # e.g. retention overtook this subscriber
                        await self._send_error(exc, None)
                        await self._leave(sub)
        except StopConsumer:
            pass  # cut as a slow consumer; the server's disconnect follows
        except Exception:
            logger.exception("catching up a subscriber failed")
        finally:
            self.catching_up = None

    async def presence_update(self, message: dict[str, Any]) -> None:
        sub = self.by_pk.get(message["session"])
        device = message["device"]
        if sub is None or device["id"] == self.device["id"]:
            return
        devices = self.presence.setdefault(sub.name, {})
        event = message["event"]
        if event == "leave":
            if devices.pop(device["id"], None) is None:
                return
        else:
            known = device["id"] in devices
            devices[device["id"]] = (_shared(device), time.monotonic())
            if event == "join" and message.get("reply_to"):
                await self.channel_layer.send(
                    message["reply_to"],
                    {
                        "type": "presence.update",
                        "session": sub.pk,
                        "event": "here",
                        "device": self.device,
                    },
                )
            if known:
                return
        await self._send_presence(
            sub, None, event="leave" if event == "leave" else "join", device=device
        )

    async def presence_query(self, message: dict[str, Any]) -> None:
        if message["session"] in self.by_pk:
            await self.channel_layer.send(
                message["reply_to"],
                {
                    "type": "presence.update",
                    "session": message["session"],
                    "event": "here",
                    "device": self.device,
                },
            )

    # --- helpers -------------------------------------------------------------------------

    async def _authorize(self, name: object) -> int:
        cached = self.authorized.get(name) if isinstance(name, str) else None
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        session = await dbexec.run_read(get_session, self.actor, name)
        assert isinstance(name, str)
        self.authorized[name] = (session.pk, time.monotonic() + AUTH_CACHE_SECONDS)
        return session.pk

    async def _deliver(self, sub: Subscription, rows: list[tuple[int, Any]]) -> None:
        for text, last, count in self._frames(sub, rows):
            await self._send_frame(sub, text, last, count)

    @staticmethod
    def _frames(sub: Subscription, rows: list[tuple[int, Any]]) -> list[tuple[str, int, int]]:
        """``events`` frames (text, last offset, entries) holding ``rows``."""
        name = json.dumps(sub.name)
        limit = setting("MAX_EVENTS_FRAME_BYTES")
        frames: list[tuple[str, int, int]] = []
        parts: list[str] = []
        size = 0
        for seq, body in rows:
            text = body.decode() if isinstance(body, bytes) else body
            parts.append(f'{{"offset":"{format_offset(seq)}",{text[1:]}')
            size += len(text)
            if size >= limit:
                frames.append((_events_frame(name, parts), seq, len(parts)))
                parts, size = [], 0
        if parts:
            frames.append((_events_frame(name, parts), rows[-1][0], len(parts)))
        return frames

    async def _send_frame(self, sub: Subscription, text: str, last: int, count: int) -> None:
        await self._make_room()
        await self.send(text_data=text)
        sub.delivered = last
        metrics.DELIVERED.inc(count)

    async def _make_room(self) -> None:
        """Wait while the client's backlog is over the limit; cut a client that stopped reading.

        A client that reads, however slowly, is waited for (replaying a large backlog must not
        look like a stall): each byte it takes restarts the patience. One that takes nothing
        for ``SLOW_CONSUMER_TIMEOUT`` seconds is closed with 4008, so what the server holds
        for a socket stays below the limit plus one frame.
        """
        limit = setting("MAX_BUFFERED_BYTES")
        queued = buffered_bytes(self.base_send)
        if queued is None or queued <= limit:
            return
        loop = asyncio.get_running_loop()
        patience = setting("SLOW_CONSUMER_TIMEOUT")
        deadline = loop.time() + patience
        while queued is not None and queued > limit:
            if loop.time() >= deadline:
                await self._cut(f"{queued} bytes queued")
            await asyncio.sleep(DRAIN_POLL_SECONDS)
            now = buffered_bytes(self.base_send)
            if now is not None and now < queued:
                deadline = loop.time() + patience
            queued = now

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        if getattr(self, "gone", False):
            raise StopConsumer()
        try:
            if self.send_patience is None:
                await super().send(text_data, bytes_data, close)
            else:
                async with asyncio.timeout(self.send_patience):
                    await super().send(text_data, bytes_data, close)
        except TimeoutError:
            await self._cut(f"a send waited {self.send_patience} s for the client")
        except Exception as exc:
            # The client went away while we sent (daphne: "Attempt to send on a closed
            # protocol"). The server's disconnect may reach a consumer this error has already
            # stopped, or none: let go of everything here, then stop.
            logger.info("the client went away during a send: %r", exc)
            self.gone = True
            await self.disconnect(1006)
            raise StopConsumer() from None

    async def _cut(self, why: str) -> NoReturn:
        """Close a client that stopped reading with 4008 and stop this consumer."""
        self.cut = True
        logger.warning("closing a slow consumer: %s", why)
        metrics.SLOW_CONSUMERS.inc()
        try:
            async with asyncio.timeout(1.0):  # the close frame may not fit either
                await self.close(code=CLOSE_SLOW_CONSUMER)
        except TimeoutError:
            pass
        await self.disconnect(CLOSE_SLOW_CONSUMER)
        raise StopConsumer()

    async def _join_presence(self, sub: Subscription) -> None:
        self.presence[sub.name] = {}
        await self.channel_layer.group_send(
            log.group_name(sub.pk),
            {
                "type": "presence.update",
                "session": sub.pk,
                "event": "join",
                "device": self.device,
                "reply_to": self.channel_name,
            },
        )
        if self.heartbeat is None:
            self.heartbeat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        # Devices of a worker that died never say goodbye: everyone re-announces itself and
        # forgets devices not heard from within PRESENCE_TTL.
        ttl = setting("PRESENCE_TTL")
        while not getattr(self, "gone", False):
            await asyncio.sleep(ttl / 3)
            for sub in list(self.subs.values()):
                await self.channel_layer.group_send(
                    log.group_name(sub.pk),
                    {
                        "type": "presence.update",
                        "session": sub.pk,
                        "event": "here",
                        "device": self.device,
                    },
                )
                try:
                    await self._expire_presence(sub, ttl)
                except StopConsumer:  # the client went away; send() has let go of it all
                    return

    async def _expire_presence(self, sub: Subscription, ttl: float) -> None:
        devices = self.presence.get(sub.name, {})
        cutoff = time.monotonic() - ttl
        for device_id, (device, seen) in list(devices.items()):
            if seen < cutoff:
                del devices[device_id]
                await self._send_presence(sub, None, event="leave", device=device)

    async def _send_presence(
        self,
        sub: Subscription,
        frame_id: Any,
        event: str = "list",
        device: dict[str, Any] | None = None,
    ) -> None:
        others = [dict(d) for d, _ in self.presence.get(sub.name, {}).values()]
        frame: dict[str, Any] = {
            "type": "presence",
            "id": frame_id,
            "session": sub.name,
            "event": event,
            "self": self.device,
            "devices": [self.device, *others],
        }
        if device is not None:
            frame["device"] = dict(device)
        await self._send(frame)

    async def _leave(self, sub: Subscription) -> None:
        await self._forget(sub)
        try:
            await self.channel_layer.group_send(
                log.group_name(sub.pk),
                {
                    "type": "presence.update",
                    "session": sub.pk,
                    "event": "leave",
                    "device": self.device,
                },
            )
        except Exception:
            logger.warning("could not announce leaving session %s", sub.pk, exc_info=True)

    async def _forget(self, sub: Subscription) -> None:
        if self.subs.pop(sub.name, None) is not None:
            metrics.SUBSCRIPTIONS.dec()
        self.by_pk.pop(sub.pk, None)
        self.presence.pop(sub.name, None)
        try:
            await self.channel_layer.group_discard(log.group_name(sub.pk), self.channel_name)
        except Exception:
            logger.warning("could not leave group of session %s", sub.pk, exc_info=True)

    async def _send(self, frame: dict[str, Any]) -> None:
        if frame.get("id") is None:
            frame.pop("id", None)
        await self.send(text_data=_dumps(frame))

    async def _send_error(self, exc: SessionError, frame_id: Any) -> None:
        await self._send({"type": "error", "id": frame_id, **exc.as_dict()})

    async def _stop_asking(self) -> None:
        """Leave the user's group; no more access checks for this socket."""
        self.grant, group = None, getattr(self, "user_group", None)
        if group is None:
            return
        self.user_group = None
        try:
            await self.channel_layer.group_discard(group, self.channel_name)
        except Exception:
            logger.warning("could not leave the group %s", group, exc_info=True)

    def _query(self, key: str) -> str:
        from urllib.parse import parse_qs

        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get(key)
        return values[0] if values else ""

    def _device_id(self) -> str:
        wanted = self._query("device")
        if wanted and len(wanted) <= 64 and wanted.replace("-", "").replace("_", "").isalnum():
            return wanted
        return "d-" + secrets.token_hex(6)


def _drop(reading: asyncio.Future[Any] | None) -> None:
    """Forget a read that is not needed after all (and whatever it ends with)."""
    if reading is not None:
        reading.cancel()
        reading.add_done_callback(lambda f: f.cancelled() or f.exception())


def _events_frame(name: str, parts: list[str]) -> str:
    events = ",".join(parts)
    return f'{{"type":"events","session":{name},"events":[{events}]}}'


class _FrameCache:
    """The last few notifications' frames, shared by the subscribers of one worker."""

    SIZE = 64

    def __init__(self) -> None:
        self._frames: dict[tuple[Any, ...], list[tuple[str, int, int]]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> list[tuple[str, int, int]] | None:
        return self._frames.get(key)

    def put(
        self, key: tuple[Any, ...], frames: list[tuple[str, int, int]]
    ) -> list[tuple[str, int, int]]:
        with self._lock:
            self._frames[key] = frames
            while len(self._frames) > self.SIZE:
                del self._frames[next(iter(self._frames))]
        return frames


_SHARED_FRAMES = _FrameCache()


def _dumps(frame: dict[str, Any]) -> str:
    try:
        return orjson.dumps(frame).decode()
    except TypeError:  # what orjson refuses (e.g. integers beyond 64 bits) json writes
        return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _parse(raw: str | bytes) -> dict[str, Any]:
    try:
        frame = orjson.loads(raw)  # strict JSON: NaN and Infinity are refused
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"frame is not valid JSON: {exc}", reason="bad_json") from exc
    if not isinstance(frame, dict):
        raise BadRequest("a frame must be a JSON object with an 'op'")
    if frame.get("id") is not None and not isinstance(frame["id"], str | int):
        raise BadRequest("'id' must be a string or a number")
    return frame


OPERATIONS = {
    "ping": SessionConsumer.op_ping,
    "subscribe": SessionConsumer.op_subscribe,
    "unsubscribe": SessionConsumer.op_unsubscribe,
    "publish": SessionConsumer.op_publish,
    "presence": SessionConsumer.op_presence,
    "send_message": SessionConsumer.op_send_message,
    "cancel": SessionConsumer.op_cancel,
    "steer": SessionConsumer.op_steer,
    "interrupt": SessionConsumer.op_interrupt,
    "heartbeat": SessionConsumer.op_heartbeat,
}
