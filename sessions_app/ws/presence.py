"""Presence: announcing a socket's device to each session it follows, and listing the devices
attached there (``presence`` frames: docs/sessions/websocket.md).

Who is attached is kept in a shared roster (``ws.roster``: a Redis hash per session, or a dict
in a single process). A join writes its device and reads the roster in one round trip and
announces itself with one ``group_send``: nobody is asked to reply. A worker keeps one copy of
each session's devices for all its sockets (``SessionView``), and one heartbeat task renews
every device of the worker in one pipeline; a socket keeps only its own device.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from typing import Any

import orjson

from sessions_app import log
from sessions_app.conf import setting
from sessions_app.ws import roster

logger = logging.getLogger(__name__)


class Device(dict[str, Any]):
    """A device as presence knows it (id, user, label): one shared copy per worker, with its
    JSON (every presence frame lists the session's devices: each is encoded once)."""

    __slots__ = ("__weakref__", "_text")

    @property
    def text(self) -> str:
        try:
            return self._text
        except AttributeError:
            self._text: str = _dumps(self)
            return self._text


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson refuses (e.g. integers beyond 64 bits) json writes
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_DEVICES: weakref.WeakValueDictionary[tuple[Any, ...], Device] = weakref.WeakValueDictionary()


def shared(device: dict[str, Any]) -> Device:
    try:
        key = tuple(sorted(device.items()))
        known = _DEVICES.get(key)
    except TypeError:  # not ours (a value that does not hash): kept, not shared
        return Device(device)
    if known is None:
        known = _DEVICES[key] = Device(device)
    return known


class SessionView:
    """One session's presence as one worker knows it, shared by the worker's sockets there:
    the devices attached (``roster.field`` -> (device, when last confirmed)), the worker's
    sockets following it, and how many of them attach each of the worker's own devices (a
    device is its id and its user: two users' devices never share an entry)."""

    __slots__ = ("devices", "members", "attached")

    def __init__(self) -> None:
        self.devices: dict[str, tuple[Device, float]] = {}
        self.members: set[Presence] = set()
        self.attached: dict[str, list[Any]] = {}  # roster.field -> [device, sockets]

    def merge(self, entries: roster.Entries, now: float) -> set[str]:
        """Take in the live entries of the roster; return their fields."""
        seen = time.monotonic()
        live = set()
        for key, (device, until) in entries.items():
            if until > now:
                live.add(key)
                self.devices[key] = (shared(device), seen)
        return live


class Worker:
    """The presence of one worker (one event loop): its sessions' views and the heartbeat."""

    def __init__(self) -> None:
        self.views: dict[int, SessionView] = {}
        self.beat: asyncio.Task[None] | None = None

    def view(self, pk: int) -> SessionView:
        view = self.views.get(pk)
        if view is None:
            view = self.views[pk] = SessionView()
        return view

    def ensure_beating(self) -> None:
        if self.beat is None or self.beat.done():
            self.beat = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        while self.views:
            await asyncio.sleep(float(setting("PRESENCE_TTL")) / 3)
            try:
                await self.renew()
            except Exception:
                logger.warning("could not renew presence", exc_info=True)

    async def renew(self) -> None:
        """Renew this worker's devices in the roster, read its sessions' rosters back (one
        round trip), drop the entries that expired (announcing their leave) and forget the
        devices nobody confirmed within PRESENCE_TTL."""
        ttl = float(setting("PRESENCE_TTL"))
        store = roster.store()
        now = time.time()
        wanted = {pk: [d for d, _ in view.attached.values()] for pk, view in self.views.items()}
        read = await store.renew(wanted, now + ttl)
        cutoff = time.monotonic() - ttl
        for pk, entries in read.items():
            view = self.views.get(pk)
            if view is None:
                continue
            live = view.merge(entries, now)
            expired = [k for k, (_, until) in entries.items() if until <= now]
            if expired:
                for key in await store.drop_expired(pk, expired, now):
                    device = entries[key][0]
                    await _announce(pk, {"type": "presence.update", "session": pk,
                                         "event": "leave", "device": device})  # fmt: skip
            for key, (device, seen) in list(view.devices.items()):
                if key in live or key in view.attached or seen >= cutoff:
                    continue
                del view.devices[key]  # e.g. its leave was lost; nobody renews it
                for member in list(view.members):
                    await member.tell(pk, "leave", device)


_workers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Worker] = weakref.WeakKeyDictionary()


def worker() -> Worker:
    loop = asyncio.get_running_loop()
    found = _workers.get(loop)
    if found is None:
        found = _workers[loop] = Worker()
    return found


async def _announce(pk: int, message: dict[str, Any]) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(log.group_name(pk), message)


class Presence:
    """The device of one consumer's socket. Subscriptions are ``consumer.subscriptions``;
    frames go out through ``consumer.send_frame``."""

    __slots__ = ("consumer", "device", "joined", "__weakref__")

    heartbeat = None  # one task per worker now (Worker.beat); kept for the consumer's cleanup

    def __init__(self, consumer: Any, device: dict[str, Any]) -> None:
        self.consumer = consumer
        self.device = shared(device)
        # Per session: the number of this socket's join there. The devices of earlier joins
        # were in the roster it read (its list shows them): their join frames are not repeated.
        self.joined: dict[int, int] = {}

    def _update(self, pk: int, event: str, **extra: Any) -> dict[str, Any]:
        return {"type": "presence.update", "session": pk, "event": event,
                "device": self.device, **extra}  # fmt: skip

    async def join(self, sub: Any) -> None:
        """Attach this device to ``sub``'s session; announce it if it is new there."""
        here = worker()
        view = here.view(sub.pk)
        view.members.add(self)
        key = roster.field(self.device)
        mine = view.attached.setdefault(key, [shared(self.device), 0])
        mine[1] += 1
        here.ensure_beating()
        now = time.time()
        try:
            new, entries, joined = await roster.store().join(
                sub.pk, self.device, now + float(setting("PRESENCE_TTL"))
            )
        except Exception:
            logger.warning("could not write presence of session %s", sub.pk, exc_info=True)
            new, entries, joined = mine[1] == 1, {}, 0
        self.joined[sub.pk] = joined
        view.merge(entries, now)
        view.devices[key] = (mine[0], time.monotonic())
        if new:
            await self.consumer.channel_layer.group_send(
                log.group_name(sub.pk), self._update(sub.pk, "join", joined=joined)
            )

    def forget(self, name: str) -> None:
        """Nothing to forget: a socket keeps no copy of the others' devices."""

    async def announce_leave(self, sub: Any) -> None:
        here = worker()
        view = here.views.get(sub.pk)
        key = roster.field(self.device)
        self.joined.pop(sub.pk, None)
        if view is not None and self in view.members:
            view.members.discard(self)
            mine = view.attached.get(key)
            if mine is not None:
                mine[1] -= 1
                if mine[1] > 0:
                    return  # another socket of this worker still attaches the device
                del view.attached[key]
            view.devices.pop(key, None)
            if not view.members:
                del here.views[sub.pk]
        try:
            if await roster.store().leave(sub.pk, key):
                layer = self.consumer.channel_layer
                await layer.group_send(log.group_name(sub.pk), self._update(sub.pk, "leave"))
        except Exception:
            logger.warning("could not announce leaving session %s", sub.pk, exc_info=True)

    async def on_update(self, sub: Any, message: dict[str, Any]) -> None:
        """Another device joined, is still here (a worker of an earlier version says so), or
        left ``sub``'s session."""
        device = message["device"]
        key = roster.field(device)
        if key == roster.field(self.device):
            return
        view = worker().views.get(sub.pk)
        if view is None:
            return
        event = message["event"]
        if event == "leave":
            if key not in view.attached:
                view.devices.pop(key, None)
            await self.send(sub, None, event="leave", device=device)
            return
        if event == "join" and message.get("reply_to"):  # a worker of an earlier version asks
            await self.consumer.channel_layer.send(
                message["reply_to"], self._update(sub.pk, "here")
            )
        known = key in view.devices
        view.devices[key] = (shared(device), time.monotonic())
        if event == "join":
            joined = message.get("joined")
            if isinstance(joined, int) and joined <= self.joined.get(sub.pk, 0):
                return  # it was in the roster this socket read when it joined
            await self.send(sub, None, event="join", device=device)
        elif not known:
            await self.send(sub, None, event="join", device=device)

    async def on_query(self, pk: int, reply_to: str) -> None:
        await self.consumer.channel_layer.send(reply_to, self._update(pk, "here"))

    async def tell(self, pk: int, event: str, device: dict[str, Any]) -> None:
        """Send a presence frame about ``device`` for session ``pk``, if still subscribed."""
        sub = self.consumer.subscriptions.by_pk.get(pk)
        if sub is None:
            return
        try:
            await self.send(sub, None, event=event, device=device)
        except Exception:  # the client went away: its own disconnect cleans up
            logger.debug("could not send presence to a socket", exc_info=True)

    async def send(
        self,
        sub: Any,
        frame_id: Any,
        event: str = "list",
        device: dict[str, Any] | None = None,
    ) -> None:
        # The frame is {"type": "presence", "id"?, "session", "event", "self", "devices",
        # "device"?}, put together from each device's JSON, encoded once per worker.
        view = worker().views.get(sub.pk)
        me = roster.field(self.device)
        mine = self.device.text
        others = [d.text for i, (d, _) in (view.devices.items() if view else ()) if i != me]
        listed = ",".join([mine, *others])
        head = '{"type":"presence",' + (
            "" if frame_id is None else '"id":' + _dumps(frame_id) + ","
        )
        about = "" if device is None else ',"device":' + shared(device).text
        text = (
            f'{head}"session":{_dumps(sub.name)},"event":"{event}","self":{mine},'
            f'"devices":[{listed}]{about}}}'
        )
        await self.consumer.send(text_data=text)
