"""The WebSocket door onto the log: one socket, many sessions (frames: docs/sessions/websocket.md).

The consumer parses frames, checks them against the socket's limits, asks the access layer and
the log service, and sends frames. What a socket keeps between frames is in objects it owns:
its subscriptions (``ws.subscriptions``: replay, live delivery, catch-up), its presence
(``ws.presence``) and its flow control (``ws.flow``: backlog, slow-consumer cut).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.contrib.auth.models import AnonymousUser
from pydantic import ValidationError

from sessions_app import (
    credentials,
    dbexec,
    dispatch,
    log,
    metrics,
    revocation,
    runs,
    services,
    tails,
    watchdog,
)
from sessions_app.access import Actor, granted
from sessions_app.conf import setting
from sessions_app.domain import control
from sessions_app.domain.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LimitExceeded,
    NotFound,
    RateLimited,
    SessionError,
    Unauthenticated,
)
from sessions_app.domain.limits import TokenBucket
from sessions_app.domain.offsets import BEGINNING, parse_start
from sessions_app.schemas import ClaimIn, ReleaseIn, RenewIn
from sessions_app.ws import lookups
from sessions_app.ws.flow import CLOSE_SLOW_CONSUMER, Flow
from sessions_app.ws.presence import Presence
from sessions_app.ws.subscriptions import Subscription, Subscriptions

logger = logging.getLogger(__name__)

__all__ = ["CLOSE_SLOW_CONSUMER", "CLOSE_UNAUTHENTICATED", "OPERATIONS", "SessionConsumer"]

CLOSE_UNAUTHENTICATED = Unauthenticated.close_code
_Ask = TypeVar("_Ask", ClaimIn, RenewIn, ReleaseIn)
AUTH_CACHE_SECONDS = 5.0
# Publishes of one socket queued for commit before it waits for the oldest to commit.
MAX_PUBLISHES_IN_FLIGHT = 16


class SessionConsumer(AsyncWebsocketConsumer):
    """Multiplexes subscriptions, publishing and presence for one client connection."""

    presence: Presence | None = None
    # Publishes waiting for their commit, and the stop of a waiting claim: made by the first
    # publish or claim (an empty set is 216 bytes, an asyncio.Event about 850, per idle socket).
    in_flight: set[asyncio.Task[None]] | tuple[()] = ()
    claim_stop: asyncio.Event | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' ``AsyncConsumer.__call__``, but the socket's two sources (the client and
        the channel layer) wake one future instead of an ``asyncio.wait`` per message
        (``channels.utils.await_many_dispatch``): that one held two coroutines, a set and
        the callbacks of each idle socket, about 1 KB (issue #25). One message is handled at
        a time, in the order they are taken, as there."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        self.base_send = send
        try:
            await _dispatch_each(sources, self.dispatch)
        except StopConsumer:
            pass

    async def connect(self) -> None:
        self.actor = self.scope.get("session_actor") or Actor(
            self.scope.get("user"), self.scope.get("session_scope")
        )
        self.subscriptions = Subscriptions(self)
        self.authorized: dict[str, tuple[int, float]] = {}
        # When the last access re-check ran: a claim's grant older than it is not used (the
        # re-check may have found the session gone). The connect checks no session.
        self.checked_at = 0.0
        # A worker key's socket carries the runs of many turns at once: its own, higher rate.
        rate = "WORKER_FRAMES_PER_SECOND" if self.actor.agents else "MAX_FRAMES_PER_SECOND"
        self.bucket = TokenBucket(setting(rate), max(setting(rate), setting("FRAME_BURST")))
        # Claims (workers): only a socket opened with an API key, like the REST door; one
        # claim waits at a time, beside the socket's other frames.
        self.keyed = credentials.scope_bearer(self.scope) is not None
        self.claiming: asyncio.Task[None] | None = None
        self.flow = Flow(self)
        await self.accept()
        metrics.SOCKETS.inc()
        self.counted = True
        watchdog.ensure_running()
        tails.follow(self)
        if not self.actor.authenticated:
            await self.send_frame(
                {"type": "error", "code": "unauthenticated", "message": "log in first"}
            )
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.presence = Presence(self, {
            "id": self._device_id(),
            "user": self.actor.user.get_username(),
            "label": self._query("label")[:80],
        })  # fmt: skip
        # Revocation (a removed member, a revoked key, a deactivated user) reaches this
        # socket through its user's group at once, and through a periodic re-check anyway.
        self.grant: revocation.Grant | None = revocation.socket_grant(self.scope, self.actor)
        self.user_group: str | None = revocation.user_group(self.actor.user.pk)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        revocation.follow(self)
        device = self.presence.device
        await self.send_frame({"type": "hello", "device": device["id"], "user": device["user"]})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "counted", False):
            metrics.SOCKETS.dec()
            self.counted = False
        await self._stop_asking()
        subscriptions = getattr(self, "subscriptions", None)
        for task in (
            self.presence.heartbeat if self.presence is not None else None,
            subscriptions.catching_up if subscriptions is not None else None,
            getattr(self, "claiming", None),
            *getattr(self, "in_flight", ()),
        ):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        for sub in list(subscriptions.subs.values() if subscriptions is not None else ()):
            await self.leave(sub)

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
                raise RateLimited("too many frames; slow down", limit="frames_per_second")
            op = frame.get("op")
            handler = OPERATIONS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise BadRequest(f"unknown op {frame.get('op')!r}", known=sorted(OPERATIONS))
            if self.in_flight and handler is not SessionConsumer.op_publish:
                # A socket's frames take effect in order: what it published is committed
                # before anything else it asked for is looked at.
                await asyncio.wait(self.in_flight)
            await handler(self, frame)
        except SessionError as exc:
            await self.send_error(exc, frame_id)
        except StopConsumer:
            raise
        except Exception:  # a bad frame must never take the connection's subscriptions down
            logger.exception("unexpected error handling a frame")
            await self.send_frame(
                {"type": "error", "id": frame_id, "code": "internal", "message": "internal error"}
            )

    def _subscribed(self, frame: dict[str, Any]) -> Subscription | None:
        """The subscription the frame's ``session`` names (None for anything but a name)."""
        name = frame.get("session")
        return self.subscriptions.subs.get(name) if isinstance(name, str) else None

    async def op_ping(self, frame: dict[str, Any]) -> None:
        await self.send_frame({"type": "pong", "id": frame.get("id")})

    async def op_subscribe(self, frame: dict[str, Any]) -> None:
        name = frame.get("session")
        start = parse_start(frame.get("after", BEGINNING))
        subs = self.subscriptions.subs
        if isinstance(name, str) and name in subs:
            raise Conflict("already subscribed to this session", session=name)
        if len(subs) >= setting("MAX_SUBSCRIPTIONS_PER_CONNECTION"):
            raise LimitExceeded("too many subscriptions on this connection", limit="subscriptions")
        pk = await self._authorize(name)
        assert isinstance(name, str) and self.presence is not None
        sub = await self.subscriptions.add(name, pk, start, frame.get("id"))
        await self.presence.join(sub)
        logger.info(
            "subscribed",
            extra={"session": name, "device": self.presence.device["id"], "offset": sub.delivered},
        )

    async def op_unsubscribe(self, frame: dict[str, Any]) -> None:
        sub = self._subscribed(frame)
        if sub is None:
            raise NotFound("not subscribed to this session")
        await self.leave(sub)
        await self.send_frame({"type": "unsubscribed", "id": frame.get("id"), "session": sub.name})

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
        if not isinstance(self.in_flight, set):
            self.in_flight = set()
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _ack(
        self, frame_id: Any, name: Any, committed: asyncio.Future[log.AppendResult | SessionError]
    ) -> None:
        try:
            outcome = await committed
            if isinstance(outcome, SessionError):
                await self.send_error(outcome, frame_id)
            else:
                ack = services.ack(outcome)
                await self.send_frame({"type": "ack", "id": frame_id, "session": name, **ack})
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

    async def op_feedback(self, frame: dict[str, Any]) -> None:
        from sessions_app import feedback as ratings

        pk = await self._authorize(frame.get("session"))
        user = self.actor.user.get_username()
        append = await dbexec.run_read(
            ratings.request, user, pk, frame.get("message"), frame.get("rating"),
            frame.get("comment"), frame.get("correction"),
        )  # fmt: skip
        append.producer = services.parse_producer(frame.get("producer"))
        ack = ratings.ack(await log.append(append), str(frame.get("message")))
        await self.send_frame(
            {"type": "ack", "id": frame.get("id"), "session": frame.get("session"), **ack}
        )

    async def op_heartbeat(self, frame: dict[str, Any]) -> None:
        pk = await self._authorize(frame.get("session"))
        alive = await dbexec.run_write(runs.heartbeat, pk, frame.get("run"))
        await self.send_frame(
            {"type": "heartbeat", "id": frame.get("id"), "run": frame.get("run"), "running": alive}
        )

    async def _append(self, frame: dict[str, Any], append: log.AppendRequest, **extra: Any) -> None:
        name = frame.get("session")
        append.session_pk = await self._authorize(name)
        result = await log.append(append)
        await self.send_frame(
            {"type": "ack", "id": frame.get("id"), "session": name, **services.ack(result), **extra}
        )

    async def op_claim(self, frame: dict[str, Any]) -> None:
        """Claim turns for a worker; a ``turns`` frame answers once turns are claimed or
        ``wait`` has passed, while the socket's other frames go on. The same claim as the REST
        door's (``dispatch``), for the socket's credential as it is at each look."""
        self._need_key()
        ask = _claim_ask(frame)
        if self.claiming is not None:
            raise Conflict("a claim is waiting on this connection already: one at a time")
        self.claim_stop = stop = asyncio.Event()
        self.claiming = asyncio.create_task(self._claim(frame.get("id"), ask, stop))

    def _need_key(self) -> None:
        if not self.keyed:
            raise Forbidden("claims need an API key: open the socket with Authorization: Bearer")

    async def op_stop_claim(self, frame: dict[str, Any]) -> None:
        """End the socket's waiting claim now (a worker stopping): it answers with what it
        has taken (a look under way finishes), so nothing is claimed for a worker that left."""
        waiting = self.claiming is not None
        if self.claim_stop is not None:
            self.claim_stop.set()
        await self.send_frame({"type": "claim_stopped", "id": frame.get("id"), "waiting": waiting})

    async def op_renew(self, frame: dict[str, Any]) -> None:
        """Push the lease of the worker's claimed turns ahead: the REST door's renew, over the
        socket the worker claims on (no request and key look-up per renewal)."""
        self._need_key()
        ask = _worker_ask(RenewIn, frame, ("worker", "turns"), "renew")
        held = await dispatch.executor()(dispatch.renew, self.actor, ask.worker, ask.turns)
        await self.send_frame({"type": "renewed", "id": frame.get("id"), "held": held})

    async def op_release(self, frame: dict[str, Any]) -> None:
        """Hand a claimed turn back (a worker stopping): the REST door's release."""
        self._need_key()
        ask = _worker_ask(ReleaseIn, frame, ("worker", "turn"), "release")
        done = await dispatch.executor()(dispatch.release, self.actor, ask.worker, ask.turn)
        await self.send_frame({"type": "released", "id": frame.get("id"), "released": done})

    async def _claim(self, frame_id: Any, ask: ClaimIn, stop: asyncio.Event) -> None:
        try:
            taken = await dispatch.claim_waiting(
                lambda: self.actor, ask.agents, ask.worker, ask.limit, ask.wait, stop
            )
            answer = {"type": "turns", "id": frame_id, "turns": [t.as_dict() for t in taken]}
        except SessionError as exc:
            answer = {"type": "error", "id": frame_id, **exc.as_dict()}
        except Exception:
            logger.exception("unexpected error claiming turns")
            answer = {"type": "error", "id": frame_id, "code": "internal"}
            answer["message"] = "internal error"
        finally:
            self.claiming = None  # the worker's next claim may come as soon as it reads this
        try:
            await self.send_frame(answer)
        except Exception:  # the client went away: what it claimed is offered again later
            logger.info("claim %r was not answered: the client went away", frame_id)

    async def op_presence(self, frame: dict[str, Any]) -> None:
        sub = self._subscribed(frame)
        if sub is None or self.presence is None:
            raise NotFound("subscribe to the session first")
        await self.presence.send(sub, frame.get("id"))

    # --- layer messages ------------------------------------------------------------------

    async def log_entries(self, message: dict[str, Any]) -> None:
        await self.subscriptions.on_entries(message)

    async def presence_update(self, message: dict[str, Any]) -> None:
        sub = self.subscriptions.by_pk.get(message["session"])
        if sub is not None and self.presence is not None:
            await self.presence.on_update(sub, message)

    async def presence_query(self, message: dict[str, Any]) -> None:
        if message["session"] in self.subscriptions.by_pk and self.presence is not None:
            await self.presence.on_query(message["session"], message["reply_to"])

    async def access_changed(self, message: dict[str, Any]) -> None:
        """The user's access changed somewhere (revocation.notify): ask again now."""
        if getattr(self, "grant", None) is None:
            return
        names = list(self.subscriptions.subs)
        if revocation.ended_here(self.grant, message):  # this socket's login: logged out
            await self.access_checked(Actor(AnonymousUser()), names, set())
            return
        actor, allowed = await dbexec.run_read(revocation.reachable, self.grant, names)
        await self.access_checked(actor, names, allowed)

    async def access_checked(self, actor: Actor, names: list[str], allowed: set[str]) -> None:
        """Act on a fresh answer to who this socket is and which of ``names`` it may still
        reach: a subscription it lost ends with a ``not_found`` error naming the session; a
        credential that no longer authenticates closes the socket with 4401."""
        self.actor = actor
        self.authorized.clear()
        self.checked_at = time.monotonic()
        subs = self.subscriptions.subs
        if not actor.authenticated:
            await self._stop_asking()
            for sub in list(subs.values()):
                await self.leave(sub)
            await self.send_frame(
                {"type": "error", "code": "unauthenticated",
                 "message": "this connection's key or user is no longer valid"}
            )  # fmt: skip
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        for name in names:
            lost = subs.get(name)
            if lost is not None and name not in allowed:
                await self.leave(lost)
                await self.send_error(NotFound("no such session", session=name), None)

    # --- helpers -------------------------------------------------------------------------

    async def _authorize(self, name: object) -> int:
        cached = self.authorized.get(name) if isinstance(name, str) else None
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        # A claim of this key just now (on this socket or another of the worker's) answered
        # what the lookup would ask: an answer's first publish needs no query.
        pk = granted(self.actor, name, self.checked_at, AUTH_CACHE_SECONDS)
        if pk is None:
            pk = await lookups.authorize(self.actor, name)
        assert isinstance(name, str)
        self.authorized[name] = (pk, time.monotonic() + AUTH_CACHE_SECONDS)
        return pk

    async def leave(self, sub: Subscription) -> None:
        """End a subscription and tell the session's other devices this one left."""
        await self.subscriptions.remove(sub)
        if self.presence is not None:
            await self.presence.announce_leave(sub)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        if getattr(self, "gone", False):
            raise StopConsumer()
        patience = self.flow.patience
        try:
            if patience is None:
                await super().send(text_data, bytes_data, close)
            else:
                async with asyncio.timeout(patience):
                    await super().send(text_data, bytes_data, close)
        except TimeoutError:
            await self.flow.cut_off(f"a send waited {patience} s for the client")
        except Exception as exc:
            # The client went away while we sent (daphne: "Attempt to send on a closed
            # protocol"). The server's disconnect may reach a consumer this error has already
            # stopped, or none: let go of everything here, then stop.
            logger.info("the client went away during a send: %r", exc)
            self.gone = True
            await self.disconnect(1006)
            raise StopConsumer() from None

    async def send_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("id") is None:
            frame.pop("id", None)
        await self.send(text_data=_dumps(frame))

    async def send_error(self, exc: SessionError, frame_id: Any) -> None:
        await self.send_frame({"type": "error", "id": frame_id, **exc.as_dict()})

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


async def _dispatch_each(
    sources: list[Callable[[], Awaitable[dict[str, Any]]]],
    dispatch: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Take a message from each source in turn as it comes and ``dispatch`` it, one at a time;
    a source is asked again once its message is handled (``await_many_dispatch``'s contract)."""
    loop = asyncio.get_running_loop()
    woken: list[asyncio.Future[None]] = [loop.create_future()]

    def wake(_: object) -> None:
        if not woken[0].done():
            woken[0].set_result(None)

    def take(source: Callable[[], Awaitable[dict[str, Any]]]) -> asyncio.Future[dict[str, Any]]:
        task = asyncio.ensure_future(source())
        task.add_done_callback(wake)
        return task

    tasks = [take(source) for source in sources]
    try:
        while True:
            await woken[0]
            # A new future before looking: a source done from here on wakes the next round.
            woken[0] = loop.create_future()
            for i, task in enumerate(tasks):
                if task.done():
                    message = task.result()
                    await dispatch(message)
                    tasks[i] = take(sources[i])
    finally:
        for task in tasks:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


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


def _claim_ask(frame: dict[str, Any]) -> ClaimIn:
    return _worker_ask(ClaimIn, frame, ("agents", "worker", "limit", "wait"), "claim")


def _worker_ask(schema: type[_Ask], frame: dict[str, Any], keys: tuple[str, ...], op: str) -> _Ask:
    """A worker's frame as the REST door's body, or BadRequest naming the field."""
    try:
        return schema.model_validate({k: frame[k] for k in keys if k in frame})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadRequest(f"{op}: {where}: {first['msg']}", field=where) from None


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
    "feedback": SessionConsumer.op_feedback,
    "claim": SessionConsumer.op_claim,
    "stop_claim": SessionConsumer.op_stop_claim,
    "renew": SessionConsumer.op_renew,
    "release": SessionConsumer.op_release,
}
