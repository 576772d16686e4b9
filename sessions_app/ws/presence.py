"""Presence on one socket: announcing its device to each session it follows, and keeping the
devices of the other sockets there (``presence`` frames: docs/sessions/websocket.md)."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from channels.exceptions import StopConsumer

from sessions_app import log
from sessions_app.conf import setting

logger = logging.getLogger(__name__)


class Device(dict[str, Any]):
    """A device as presence knows it (id, user, label): one shared copy per worker."""

    __slots__ = ("__weakref__",)


# Every socket of a session keeps the others' devices; with this table, a worker holds each
# device once however many of its sockets know it (20 sockets in a session: 8 KB less each).
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


class Presence:
    """The device of one consumer's socket and, per session it follows, the other devices
    attached (id -> (device, when last heard of)). Subscriptions are ``consumer.subscriptions``;
    frames go out through ``consumer.send_frame``."""

    def __init__(self, consumer: Any, device: dict[str, Any]) -> None:
        self.consumer = consumer
        self.device = device
        self.others: dict[str, dict[str, tuple[Device, float]]] = {}
        self.heartbeat: asyncio.Task[None] | None = None

    def _update(self, pk: int, event: str, **extra: Any) -> dict[str, Any]:
        return {"type": "presence.update", "session": pk, "event": event,
                "device": self.device, **extra}  # fmt: skip

    async def join(self, sub: Any) -> None:
        self.others[sub.name] = {}
        layer = self.consumer.channel_layer
        reply_to = self.consumer.channel_name
        await layer.group_send(
            log.group_name(sub.pk), self._update(sub.pk, "join", reply_to=reply_to)
        )
        if self.heartbeat is None:
            self.heartbeat = asyncio.create_task(self._beat())

    def forget(self, name: str) -> None:
        self.others.pop(name, None)

    async def announce_leave(self, sub: Any) -> None:
        try:
            layer = self.consumer.channel_layer
            await layer.group_send(log.group_name(sub.pk), self._update(sub.pk, "leave"))
        except Exception:
            logger.warning("could not announce leaving session %s", sub.pk, exc_info=True)

    async def on_update(self, sub: Any, message: dict[str, Any]) -> None:
        """Another device joined, is still here, or left ``sub``'s session."""
        device = message["device"]
        if device["id"] == self.device["id"]:
            return
        devices = self.others.setdefault(sub.name, {})
        event = message["event"]
        if event == "leave":
            if devices.pop(device["id"], None) is None:
                return
        else:
            known = device["id"] in devices
            devices[device["id"]] = (shared(device), time.monotonic())
            if event == "join" and message.get("reply_to"):
                await self.consumer.channel_layer.send(
                    message["reply_to"], self._update(sub.pk, "here")
                )
            if known:
                return
        await self.send(sub, None, event="leave" if event == "leave" else "join", device=device)

    async def on_query(self, pk: int, reply_to: str) -> None:
        await self.consumer.channel_layer.send(reply_to, self._update(pk, "here"))

    async def send(
        self,
        sub: Any,
        frame_id: Any,
        event: str = "list",
        device: dict[str, Any] | None = None,
    ) -> None:
        others = [dict(d) for d, _ in self.others.get(sub.name, {}).values()]
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
        await self.consumer.send_frame(frame)

    async def _beat(self) -> None:
        # Devices of a worker that died never say goodbye: everyone re-announces itself and
        # forgets devices not heard from within PRESENCE_TTL.
        ttl = setting("PRESENCE_TTL")
        consumer = self.consumer
        while not getattr(consumer, "gone", False):
            await asyncio.sleep(ttl / 3)
            for sub in list(consumer.subscriptions.subs.values()):
                await consumer.channel_layer.group_send(
                    log.group_name(sub.pk), self._update(sub.pk, "here")
                )
                try:
                    await self._expire(sub, ttl)
                except StopConsumer:  # the client went away; send() has let go of it all
                    return

    async def _expire(self, sub: Any, ttl: float) -> None:
        devices = self.others.get(sub.name, {})
        cutoff = time.monotonic() - ttl
        for device_id, (device, seen) in list(devices.items()):
            if seen < cutoff:
                del devices[device_id]
                await self.send(sub, None, event="leave", device=device)
