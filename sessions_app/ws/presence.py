"""Presence: announcing a socket's device to each session it follows, and listing the devices
attached there (``presence`` frames: docs/sessions/websocket.md).

Who is attached is kept in a shared roster (``ws.roster``: a Redis hash per session, or a dict
in a single process). A join writes its device and reads the roster in one round trip and
announces itself with one ``group_send``: nobody is asked to reply.

A worker hears the joins and leaves of the sessions it follows once (``roster.Store.follow``:
one message per change and worker, not per socket), and keeps one copy of each session's
devices for all its sockets (``SessionView``). It tells its sockets in coalesced frames: the
first change after a quiet ``PRESENCE_COALESCE`` window goes out at once, later changes within
the window go out together at its end (held further while changes keep coming, at most
``HOLD_MAX_SECONDS`` after the first: ``held_until``), and the device list of such a frame is
encoded once for all the worker's sockets in the session (issue #25: a join storm sent O(n^2)
frames of O(n) devices each). One heartbeat task renews every device of the worker in one
pipeline; a socket keeps only its own device.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from sessions_app.conf import setting
from sessions_app.ws import roster

logger = logging.getLogger(__name__)

# A session with more devices than this coalesces over a longer window, in proportion to its
# devices: a frame lists every device, so a window's frames to a session cost n frames of n
# devices; stretching the window with n keeps a churning session's presence bytes a second
# growing as n instead of n^2.
COALESCE_DEVICES = 10
COALESCE_MAX_SECONDS = 5.0
# While a session's devices keep arriving (or leaving) within a window of each other, its
# members' next frame is held until a window passes with no change, but never longer than
# this after the first change it tells (or one window, if a window is longer): a join storm
# then costs each member about one frame once it settles, not one per window (issue #25).
HOLD_MAX_SECONDS = 10.0


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


def window(devices: int) -> float:
    """Seconds one coalescing window lasts in a session of ``devices`` devices."""
    base = float(setting("PRESENCE_COALESCE"))
    return min(max(base, COALESCE_MAX_SECONDS), base * max(1.0, devices / COALESCE_DEVICES))


def held_until(first: float, last: float, span: float) -> float:
    """When changes held since ``first``, the latest at ``last``, go out in a session whose
    window is ``span`` seconds: once a window passed with no change, at the latest
    ``max(HOLD_MAX_SECONDS, span)`` after the first."""
    return min(last + span, first + max(HOLD_MAX_SECONDS, span))


# --- frames (no I/O) -------------------------------------------------------------------------


@dataclass(slots=True)
class Change:
    """A device joined or left; ``since``: the view's clock when its list first showed this."""

    key: str
    event: str  # "join" or "leave"
    device: Device
    since: int

    def told_to(self, me: str, mark: int) -> bool:
        """Whether the member of field ``me``, whose list started at clock ``mark``, is told:
        never of its own device, nor of what its list already showed when it joined."""
        return self.since > mark and self.key != me


def merged(changes: Iterable[Change]) -> list[Change]:
    """The last change of each device, in the order of those last changes: a device that came
    and went within a window is a leave (a member may have seen it in a list meanwhile), one
    that went and came back a join."""
    last: dict[str, Change] = {}
    for change in changes:
        last.pop(change.key, None)
        last[change.key] = change
    return list(last.values())


def described(changes: list[Change]) -> tuple[str, str]:
    """The ``event`` of a frame telling ``changes`` (at least one) and what follows its
    ``devices``: ``join``/``leave`` with ``device`` for one change, else ``changes`` with the
    ``joined`` and ``left`` lists."""
    if len(changes) == 1:
        change = changes[0]
        return change.event, ',"device":' + change.device.text
    joined = ",".join(c.device.text for c in changes if c.event == "join")
    left = ",".join(c.device.text for c in changes if c.event == "leave")
    return "changes", f',"joined":[{joined}],"left":[{left}]'


class Listing:
    """A session's devices as JSON, joined once; each member's list puts its own device first
    (two slices of the shared text, not a join of every device per member)."""

    __slots__ = ("spans", "text")

    def __init__(self, devices: Iterable[tuple[str, Device]]) -> None:
        parts: list[str] = []
        self.spans: dict[str, tuple[int, int]] = {}
        at = 0
        for key, device in devices:
            text = device.text
            self.spans[key] = (at, at + len(text))
            parts.append(text)
            at += len(text) + 1
        self.text = ",".join(parts)

    def for_member(self, key: str, mine: str) -> str:
        span = self.spans.get(key)
        rest = self.text
        if span is not None:
            start, end = span
            if end < len(rest):
                rest = rest[:start] + rest[end + 1 :]
            else:
                rest = rest[: max(start - 1, 0)]
        return mine + "," + rest if rest else mine


def frame_text(
    session: str, event: str, mine: str, listed: str, tail: str = "", head: str = ""
) -> str:
    """A ``presence`` frame: ``session`` is the session's name as JSON, ``mine`` the member's
    device as JSON, ``listed`` the devices (its own first), ``head`` an ``"id":..,`` part."""
    return (
        f'{{"type":"presence",{head}"session":{session},"event":"{event}","self":{mine},'
        f'"devices":[{listed}]{tail}}}'
    )


# --- one worker's presence -------------------------------------------------------------------


class SessionView:
    """One session's presence as one worker knows it, shared by the worker's sockets there:
    the devices attached (``roster.field`` -> (device, when last confirmed)), the worker's
    sockets following it, how many of them attach each of the worker's own devices (a device
    is its id and its user: two users' devices never share an entry), and the changes not yet
    told to the sockets. Its clock counts the changes of its list: a socket's list starts at
    the clock of its join (its subscription's ``mark``); it is told of the changes after that."""

    __slots__ = (
        "devices", "members", "attached", "pending", "flushing", "told_at", "ready", "clock",
        "held_since", "changed_at",
    )  # fmt: skip

    def __init__(self) -> None:
        # roster.field -> (device, when last confirmed, the clock when the list first showed it)
        self.devices: dict[str, tuple[Device, float, int]] = {}
        self.members: set[Presence] = set()
        # roster.field -> [device, sockets, written by a join (renewed from then on)]
        self.attached: dict[str, list[Any]] = {}
        self.pending: list[Change] = []
        self.flushing: asyncio.Task[None] | None = None
        self.told_at = -math.inf  # loop time of the last flush
        self.held_since = self.changed_at = -math.inf  # loop times of the first, last pending
        self.ready: asyncio.Event | None = None  # set once the worker hears the session
        self.clock = 0

    def merge(self, entries: roster.Entries, now: float) -> set[str]:
        """Take in the live entries of the roster; return their fields."""
        seen = time.monotonic()
        live = set()
        for key, (device, until) in entries.items():
            if until > now:
                live.add(key)
                known = self.devices.get(key)
                if known is None:
                    self.clock += 1
                self.devices[key] = (
                    shared(device),
                    seen,
                    self.clock if known is None else known[2],
                )
        return live

    def attach(self, key: str, device: Device) -> int:
        """List a device of this worker; return the clock its socket's list starts at."""
        known = self.devices.get(key)
        if known is None:
            self.clock += 1
        self.devices[key] = (device, time.monotonic(), self.clock if known is None else known[2])
        return self.clock

    async def tell(self, pk: int, changes: list[Change]) -> int:
        """Send each member one frame with the changes it is to be told (if any); return the
        number of frames sent."""
        members = list(self.members)
        sent = 0
        if not members or not changes:
            return sent
        listing = Listing((key, entry[0]) for key, entry in self.devices.items())
        keys = {c.key for c in changes}
        first = min(c.since for c in changes)
        everyone = described(changes)
        names: dict[str, str] = {}
        for member in members:
            sub = member.consumer.subscriptions.by_pk.get(pk)
            if sub is None:  # unsubscribing
                continue
            mark = sub.mark
            if member.key not in keys and mark < first:
                event, tail = everyone
            else:
                told = [c for c in changes if c.told_to(member.key, mark)]
                if not told:
                    continue
                event, tail = described(told)
            name = names.get(sub.name)
            if name is None:
                name = names[sub.name] = _dumps(sub.name)
            mine = member.device.text
            await member.deliver(
                frame_text(name, event, mine, listing.for_member(member.key, mine), tail)
            )
            sent += 1
        return sent


class Worker:
    """The presence of one worker (one event loop): its sessions' views, hearing their changes
    (``roster.Store.follow``), and the heartbeat."""

    def __init__(self) -> None:
        self.views: dict[int, SessionView] = {}
        self.beat: asyncio.Task[None] | None = None
        self.leaving: dict[int, asyncio.Future[Any]] = {}  # pk -> its unfollow
        self.sending: set[asyncio.Task[Any]] = set()

    def view(self, pk: int) -> SessionView:
        view = self.views.get(pk)
        if view is None:
            view = self.views[pk] = SessionView()
        return view

    # -- hearing the sessions' changes --

    async def follow(self, pk: int, view: SessionView) -> None:
        """Hear session ``pk``'s changes from now on (``view``'s first member asks)."""
        store = roster.store()
        try:
            leaving = self.leaving.get(pk)
            if leaving is not None:  # our last leave's unfollow must not undo this follow
                await asyncio.wait([leaving])
            await store.follow(pk, self.hear)
            if self.views.get(pk) is not view:  # its members left meanwhile
                await store.unfollow(pk)
        except Exception:
            logger.warning("could not follow the presence of session %s", pk, exc_info=True)

    def hear(self, message: dict[str, Any]) -> None:
        try:
            if message.get("type") == "presence.update":
                self.note(message.get("session"), message.get("event"), message.get("device"))
        except Exception:
            logger.warning("a bad presence change: %r", message, exc_info=True)

    def drop(self, pk: int) -> None:
        """Forget session ``pk`` (its last member left there)."""
        self.views.pop(pk, None)
        leaving = asyncio.ensure_future(roster.store().unfollow(pk))
        self.leaving[pk] = leaving
        leaving.add_done_callback(lambda done: self._left(pk, done))

    def _left(self, pk: int, done: asyncio.Future[Any]) -> None:
        if self.leaving.get(pk) is done:
            del self.leaving[pk]
        if not done.cancelled() and done.exception() is not None:
            logger.warning("could not stop following session %s", pk, exc_info=done.exception())

    # -- changes and the frames that tell them --

    def note(self, pk: Any, event: Any, device: Any, *, once: bool = False) -> None:
        """Apply a change to session ``pk``'s view and have its members told. ``once``: the
        message may come once per socket (a worker of an earlier version sent it to the
        sockets' group): only what changes the view is told."""
        view = self.views.get(pk) if isinstance(pk, int) else None
        if view is None or not isinstance(device, dict):
            return
        key, device = roster.field(device), shared(device)
        known = view.devices.get(key)
        if event == "leave":
            # Not listed here: nobody here shows it. Still attached here: another worker's
            # socket of the same device left; it stays.
            if known is None or key in view.attached:
                return
            del view.devices[key]
            view.clock += 1
            since = view.clock
        elif event in ("join", "here"):
            event = "join"
            if known is not None and (known[0] == device or once):
                # listed already (e.g. read from the roster by a later socket's join): told
                # to the sockets whose lists did not show it yet
                view.devices[key] = (known[0], time.monotonic(), known[2])
                if once:
                    return
                since = known[2]
            else:
                view.clock += 1
                since = view.clock
                view.devices[key] = (device, time.monotonic(), since)
        else:
            return
        view.pending.append(Change(key, event, device, since))
        loop = asyncio.get_running_loop()
        view.changed_at = loop.time()
        if view.flushing is None:
            view.held_since = view.changed_at
            delay = view.told_at + window(len(view.devices)) - view.changed_at
            view.flushing = loop.create_task(self._flush(pk, view, max(0.0, delay)))

    async def _flush(self, pk: int, view: SessionView, delay: float) -> None:
        if delay > 0:  # within a window of the last frame: held while changes keep coming
            loop = asyncio.get_running_loop()
            while delay > 0:
                await asyncio.sleep(delay)
                span = window(len(view.devices))
                delay = held_until(view.held_since, view.changed_at, span) - loop.time()
        changes, view.pending, view.flushing = view.pending, [], None
        quiet, view.told_at = view.told_at, asyncio.get_running_loop().time()
        if setting("PRESENCE_COALESCE"):
            sent = await view.tell(pk, merged(changes))
        else:  # coalescing off: a frame per change, as before
            sent = sum([await view.tell(pk, [change]) for change in changes])
        if not sent:
            view.told_at = quiet  # nobody was told: no window started

    # -- the heartbeat --

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
        # Only the devices whose join wrote them: a join that renewal wrote first would find
        # its device there and not announce it.
        wanted = {
            pk: [mine[0] for mine in view.attached.values() if mine[2]]
            for pk, view in self.views.items()
        }
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
            for key, (device, seen, _) in list(view.devices.items()):
                if key in live or key in view.attached or seen >= cutoff:
                    continue
                self.note(pk, "leave", device)  # e.g. its leave was lost; nobody renews it


_workers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Worker] = weakref.WeakKeyDictionary()


def worker() -> Worker:
    loop = asyncio.get_running_loop()
    found = _workers.get(loop)
    if found is None:
        found = _workers[loop] = Worker()
    return found


async def _announce(pk: int, message: dict[str, Any]) -> None:
    roster.store().publish(pk, message)


class Presence:
    """The device of one consumer's socket. Subscriptions are ``consumer.subscriptions``;
    frames go out through ``consumer.send``."""

    __slots__ = ("consumer", "device", "key", "__weakref__")

    heartbeat = None  # one task per worker now (Worker.beat); kept for the consumer's cleanup

    def __init__(self, consumer: Any, device: dict[str, Any]) -> None:
        self.consumer = consumer
        self.device = shared(device)
        self.key = roster.field(self.device)

    def _update(self, pk: int, event: str, **extra: Any) -> dict[str, Any]:
        return {"type": "presence.update", "session": pk, "event": event,
                "device": self.device, **extra}  # fmt: skip

    async def join(self, sub: Any) -> None:
        """Attach this device to ``sub``'s session; announce it if it is new there."""
        here = worker()
        view = here.view(sub.pk)
        view.members.add(self)
        mine = view.attached.setdefault(self.key, [self.device, 0, False])
        mine[1] += 1
        here.ensure_beating()
        if view.ready is None:
            # The worker's first socket there: heard first, then read. A join after the
            # roster read reaches this worker; the others' sockets join what it knows.
            view.ready = asyncio.Event()
            try:
                await here.follow(sub.pk, view)
                new = await self._write(sub.pk, view, read=True)
            finally:
                view.ready.set()
        else:
            await view.ready.wait()
            new = await self._write(sub.pk, view, read=False)
        sub.mark = view.attach(self.key, mine[0])
        if new:
            await _announce(sub.pk, self._update(sub.pk, "join"))

    async def _write(self, pk: int, view: SessionView, read: bool) -> bool:
        """Write this device into the roster (and read it into ``view``); return whether the
        device is new there."""
        now = time.time()
        mine = view.attached[self.key]
        try:
            new, entries = await roster.store().join(
                pk, self.device, now + float(setting("PRESENCE_TTL")), read
            )
        except Exception:
            logger.warning("could not write presence of session %s", pk, exc_info=True)
            new, entries = mine[1] == 1 and not mine[2], {}
        mine[2] = True  # renewed by the heartbeat from now on
        view.merge(entries, now)
        return bool(new)

    def forget(self, name: str) -> None:
        """Nothing to forget: a socket keeps no copy of the others' devices."""

    async def announce_leave(self, sub: Any) -> None:
        here = worker()
        view = here.views.get(sub.pk)
        if view is not None and self in view.members:
            view.members.discard(self)
            mine = view.attached.get(self.key)
            if mine is not None:
                mine[1] -= 1
                if mine[1] > 0:
                    return  # another socket of this worker still attaches the device
                del view.attached[self.key]
            if not view.members:
                here.drop(sub.pk)
        try:
            if await roster.store().leave(sub.pk, self.key):
                await _announce(sub.pk, self._update(sub.pk, "leave"))
        except Exception:
            logger.warning("could not announce leaving session %s", sub.pk, exc_info=True)

    async def on_update(self, sub: Any, message: dict[str, Any]) -> None:
        """A change sent to the session's sockets by a worker of an earlier version (this
        version sends them to the workers' presence group): applied once per worker."""
        if message.get("event") == "join" and message.get("reply_to"):
            await self.consumer.channel_layer.send(
                message["reply_to"], self._update(sub.pk, "here")
            )
        worker().note(sub.pk, message.get("event"), message.get("device"), once=True)

    async def on_query(self, pk: int, reply_to: str) -> None:
        """A device list asked of every socket by a worker of an earlier version (its REST
        presence, before it read the roster): answered while such workers remain."""
        await self.consumer.channel_layer.send(reply_to, self._update(pk, "here"))

    async def deliver(self, text: str) -> None:
        """Send a presence frame built by the session's view."""
        flow = getattr(self.consumer, "flow", None)
        if getattr(flow, "patience", None) is None:
            await self._send(text)  # the server buffers: this does not wait for the client
        else:  # a send may wait for this client: not the others' frames with it
            here = worker()
            task = asyncio.get_running_loop().create_task(self._send(text))
            here.sending.add(task)
            task.add_done_callback(here.sending.discard)

    async def _send(self, text: str) -> None:
        try:
            await self.consumer.send(text_data=text)
        except Exception:  # the client went away: its own disconnect cleans up
            logger.debug("could not send presence to a socket", exc_info=True)

    async def send(self, sub: Any, frame_id: Any) -> None:
        """Answer a presence request: the session's devices now (``event`` ``list``)."""
        view = worker().views.get(sub.pk)
        mine = self.device.text
        others = [e[0].text for k, e in (view.devices.items() if view else ()) if k != self.key]
        head = "" if frame_id is None else '"id":' + _dumps(frame_id) + ","
        listed = ",".join([mine, *others])
        await self.consumer.send(
            text_data=frame_text(_dumps(sub.name), "list", mine, listed, head=head)
        )
