"""Who is attached to each session, shared by every worker: the presence roster.

One roster per session: ``field(device)`` (the device's id and its user) -> (device, expiry
time). On Redis (when the channel layer is channels_redis) it is one hash per session,
``<layer prefix>:presence:<session pk>``, each field's value the JSON ``{"d": device, "u":
expiry}``; the key itself expires too, so a session nobody renews leaves nothing behind. On the
in-memory layer (one process) it is a dict with the same interface.

A client picks its device id (``?device=``, so that a device keeps it across reconnects): an
entry is keyed by the id *and* the user, so that a member who picks another member's id adds a
device of their own instead of overwriting (or removing) the other's.

A worker writes its devices on join, renews all of them with one heartbeat task (one pipeline
per beat, not a task per socket) and removes them on leave. Readers skip expired entries; the
worker's heartbeat deletes the expired ones it finds and announces their leave (the devices of
a worker that died without saying goodbye).

Joins and leaves are published per session (``publish``) to the workers that follow it
(``follow``): on Redis pub/sub, channel ``<layer prefix>:presence-changes:<session pk>``,
through a ``Bus`` of the roster's own; in one process, straight to the followers' loops.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from django.conf import settings

logger = logging.getLogger(__name__)

Entries = dict[str, tuple[dict[str, Any], float]]  # field -> (device, expiry, epoch seconds)
Hear = Callable[[dict[str, Any]], None]  # takes a change published for a followed session
Wanted = dict[int, list[dict[str, Any]]]  # session pk -> devices to renew there


class Store(Protocol):
    async def join(
        self, pk: int, device: dict[str, Any], until: float, read: bool = True
    ) -> tuple[bool, Entries]:
        """Write ``device`` into session ``pk``'s roster; return whether it was absent (or
        expired) before and, if ``read``, the roster as it is now (expired entries included;
        else nothing: a worker that already follows the session knows it)."""

    async def leave(self, pk: int, key: str) -> bool:
        """Remove the device of field ``key``; True if this call removed it."""

    async def renew(self, rosters: Wanted, until: float) -> dict[int, Entries]:
        """Write these devices with a new expiry and read these sessions' rosters, at once."""

    async def drop_expired(self, pk: int, keys: list[str], now: float) -> list[str]:
        """Delete the entries of fields ``keys`` still expired at ``now``; return those deleted."""

    async def read(self, pk: int) -> Entries:
        """Session ``pk``'s roster as it is now (expired entries included)."""

    async def follow(self, pk: int, hear: Hear) -> None:
        """Have ``hear`` (this loop's) take every change published for session ``pk`` from
        the moment this returns."""

    async def unfollow(self, pk: int) -> None:
        """Stop hearing session ``pk`` on this loop."""

    def publish(self, pk: int, message: dict[str, Any]) -> None:
        """Tell every follower of session ``pk`` of a change (at most once; in order of the
        publishing worker's calls)."""


class MemoryStore:
    """The roster of a single process (the in-memory channel layer reaches no other)."""

    def __init__(self) -> None:
        self.rosters: dict[int, Entries] = {}
        self.hearers: dict[int, dict[asyncio.AbstractEventLoop, Hear]] = {}

    async def join(
        self, pk: int, device: dict[str, Any], until: float, read: bool = True
    ) -> tuple[bool, Entries]:
        roster = self.rosters.setdefault(pk, {})
        before = roster.get(field(device))
        roster[field(device)] = (dict(device), until)
        return before is None or before[1] <= time.time(), dict(roster) if read else {}

    async def leave(self, pk: int, key: str) -> bool:
        roster = self.rosters.get(pk, {})
        gone = roster.pop(key, None) is not None
        if not roster:
            self.rosters.pop(pk, None)
        return gone

    async def renew(self, rosters: Wanted, until: float) -> dict[int, Entries]:
        out: dict[int, Entries] = {}
        for pk, devices in rosters.items():
            roster = self.rosters.setdefault(pk, {})
            for device in devices:
                roster[field(device)] = (dict(device), until)
            out[pk] = dict(roster)
        return out

    async def drop_expired(self, pk: int, keys: list[str], now: float) -> list[str]:
        roster = self.rosters.get(pk, {})
        dropped = [k for k in keys if k in roster and roster[k][1] <= now]
        for key in dropped:
            del roster[key]
        return dropped

    async def read(self, pk: int) -> Entries:
        return dict(self.rosters.get(pk, {}))

    async def follow(self, pk: int, hear: Hear) -> None:
        self.hearers.setdefault(pk, {})[asyncio.get_running_loop()] = hear

    async def unfollow(self, pk: int) -> None:
        hearers = self.hearers.get(pk, {})
        hearers.pop(asyncio.get_running_loop(), None)
        if not hearers:
            self.hearers.pop(pk, None)

    def publish(self, pk: int, message: dict[str, Any]) -> None:
        for loop, hear in list(self.hearers.get(pk, {}).items()):
            if not loop.is_closed():
                loop.call_soon_threadsafe(hear, message)


_DROP_IF_EXPIRED = """
local dropped = {}
for i, field in ipairs(ARGV) do
  if i > 1 then
    local raw = redis.call('HGET', KEYS[1], field)
    if raw then
      local ok, entry = pcall(cjson.decode, raw)
      if not ok or type(entry) ~= 'table' or not tonumber(entry['u'])
          or tonumber(entry['u']) <= tonumber(ARGV[1]) then
        redis.call('HDEL', KEYS[1], field)
        table.insert(dropped, field)
      end
    end
  end
end
return dropped
"""


POOL_SIZE = 32  # connections to Redis per worker for the roster (one of them hears changes)
JOINS_AT_ONCE = 500  # joins written by one round trip at most; the rest go in the next
CONFIRM_SECONDS = 30.0  # a SUBSCRIBE not confirmed by then is logged and given up waiting for
JOINS = "#joins"  # a field that versions before #25's coalescing kept in the hash: skipped


def field(device: dict[str, Any]) -> str:
    """The roster key of ``device``: its id, then its user's name. A device id holds no "/"
    (the consumer accepts letters, digits, "-" and "_"), so no two (id, user) pairs share one."""
    return f"{device.get('id')}/{device.get('user')}"


def device_of(key: str) -> dict[str, Any]:
    """What a field tells of its device (for an entry that no longer decodes)."""
    device_id, _, user = key.partition("/")
    return {"id": device_id, "user": user}


class RedisStore:
    """The roster on Redis: one hash per session, shared by every worker on that Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        # redis-py's asyncio connections belong to the loop that opened them.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._buses: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Bus] = (
            weakref.WeakKeyDictionary()
        )
        self._joins: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Joins] = (
            weakref.WeakKeyDictionary()
        )

    def key(self, pk: int) -> str:
        return f"{self.prefix}:presence:{pk}"

    def channel(self, pk: int) -> str:
        """The pub/sub channel of session ``pk``'s presence changes."""
        return f"{self.prefix}:presence-changes:{pk}"

    def bus(self) -> Bus:
        loop = asyncio.get_running_loop()
        bus = self._buses.get(loop)
        if bus is None:
            bus = self._buses[loop] = Bus(self.client())
        return bus

    async def follow(self, pk: int, hear: Hear) -> None:
        await self.bus().subscribe(self.channel(pk), hear)

    async def unfollow(self, pk: int) -> None:
        await self.bus().unsubscribe(self.channel(pk))

    def publish(self, pk: int, message: dict[str, Any]) -> None:
        self.bus().publish(self.channel(pk), orjson.dumps(message))

    @property
    def key_ttl_ms(self) -> int:
        # A session's hash outlives its entries: twice PRESENCE_TTL after its last renewal.
        from sessions_app.conf import setting

        return max(1000, int(2000 * float(setting("PRESENCE_TTL"))))

    def client(self) -> Any:
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # A join storm waits for a few connections instead of opening one per join.
            pool = redis.BlockingConnectionPool.from_url(
                self.url, max_connections=POOL_SIZE, timeout=None
            )
            client = self._clients[loop] = redis.Redis(connection_pool=pool)
        return client

    async def join(
        self, pk: int, device: dict[str, Any], until: float, read: bool = True
    ) -> tuple[bool, Entries]:
        loop = asyncio.get_running_loop()
        joins = self._joins.get(loop)
        if joins is None:
            joins = self._joins[loop] = Joins(self._join_many)
        return await joins.ask((pk, device, until, read))

    async def _join_many(self, asks: list[JoinAsk]) -> list[tuple[bool, Entries]]:
        """Write the devices of ``asks`` in one transaction: each ask's previous entry, then
        the rosters asked for as they are after every write of the call."""
        reads = list(dict.fromkeys(pk for pk, _, _, read in asks if read))
        async with self.client().pipeline(transaction=True) as pipe:
            for pk, device, until, _ in asks:
                pipe.hget(self.key(pk), field(device))
                pipe.hset(self.key(pk), field(device), _encode(device, until))
            for pk in dict.fromkeys(pk for pk, _, _, _ in asks):
                pipe.pexpire(self.key(pk), self.key_ttl_ms)
            for pk in reads:
                pipe.hgetall(self.key(pk))
            results = await pipe.execute()
        read = dict(zip(reads, map(_decode_all, results[len(results) - len(reads) :]), strict=True))
        now = time.time()
        out = []
        for i, (pk, _, _, wanted) in enumerate(asks):
            before = results[2 * i]
            old = _decode(before) if before is not None else None
            out.append((old is None or old[1] <= now, read[pk] if wanted else {}))
        return out

    async def leave(self, pk: int, key: str) -> bool:
        return bool(await self.client().hdel(self.key(pk), key))

    async def renew(self, rosters: Wanted, until: float) -> dict[int, Entries]:
        pks = list(rosters)
        async with self.client().pipeline(transaction=False) as pipe:
            for pk in pks:
                key = self.key(pk)
                if rosters[pk]:
                    pipe.hset(key, mapping={field(d): _encode(d, until) for d in rosters[pk]})
                    pipe.pexpire(key, self.key_ttl_ms)
                pipe.hgetall(key)
            results = await pipe.execute()
        out: dict[int, Entries] = {}
        at = 0
        for pk in pks:
            at += 2 if rosters[pk] else 0
            out[pk] = _decode_all(results[at])
            at += 1
        return out

    async def drop_expired(self, pk: int, keys: list[str], now: float) -> list[str]:
        # Checked and deleted in one step on the server: a device renewed meanwhile stays.
        dropped = await self.client().eval(_DROP_IF_EXPIRED, 1, self.key(pk), now, *keys)
        return [d.decode() if isinstance(d, bytes) else str(d) for d in dropped]

    async def read(self, pk: int) -> Entries:
        return _decode_all(await self.client().hgetall(self.key(pk)))


JoinAsk = tuple[int, dict[str, Any], float, bool]  # session pk, device, expiry, read back


class Joins:
    """The joins of one event loop on their way to Redis: those that arrive while a round trip
    is in flight go together in the next one (a join storm's 10,000 joins were one transaction
    each, 13% of a profile of the worker's thread; issue #25). Every round trip starts after
    every join it writes arrived; a failed one fails each of its joins."""

    def __init__(self, many: Callable[[list[JoinAsk]], Awaitable[list[tuple[bool, Entries]]]]):
        self.many = many
        self.waiting: list[tuple[JoinAsk, asyncio.Future[tuple[bool, Entries]]]] = []
        self.writing: asyncio.Task[None] | None = None

    async def ask(self, join: JoinAsk) -> tuple[bool, Entries]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[bool, Entries]] = loop.create_future()
        self.waiting.append((join, answer))
        if self.writing is None:
            self.writing = loop.create_task(self._write())
        return await answer

    async def _write(self) -> None:
        try:
            while self.waiting:
                batch = self.waiting[:JOINS_AT_ONCE]
                self.waiting = self.waiting[JOINS_AT_ONCE:]
                try:
                    found = await self.many([join for join, _ in batch])
                except Exception as exc:
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                except BaseException:
                    for _, answer in batch:
                        answer.cancel()
                    raise
                for (_, answer), one in zip(batch, found, strict=True):
                    if not answer.done():
                        answer.set_result(one)
        finally:
            self.writing = None
            for _, answer in self.waiting:  # left only if this task was cancelled
                answer.cancel()
            self.waiting = []


class Bus:
    """One worker's presence changes on Redis pub/sub, on connections of its own (not the
    channel layer's): the changes it publishes go out together, one pipeline per loop turn,
    and its reader takes every message the connection holds at once. Through the channel
    layer each change waited for the one before it (a publish holds the layer's connection
    for its round trip) and the layer's reader took one message per loop turn: a join storm
    at 10,000 sockets went at tens of changes a second (issue #25)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pubsub: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.hearers: dict[str, Hear] = {}
        self.confirming: dict[str, asyncio.Future[None]] = {}
        self.outbox: list[tuple[str, bytes]] = []
        self.sending: asyncio.Task[None] | None = None
        # redis-py's PubSub is not safe for concurrent commands: two first subscribes would
        # each take a connection, and the first one's would never be read.
        self.lock = asyncio.Lock()

    async def subscribe(self, channel: str, hear: Hear) -> None:
        """Hear ``channel`` once Redis confirms the subscription (so that a change published
        after this returns is heard)."""
        self.hearers[channel] = hear
        async with self.lock:
            if self.pubsub is None:
                self.pubsub = self.client.pubsub()
            confirmed = self.confirming.get(channel)
            if confirmed is None or confirmed.done():
                confirmed = asyncio.get_running_loop().create_future()
                self.confirming[channel] = confirmed
                await self.pubsub.subscribe(channel)
        if self.reader is None or self.reader.done():
            self.reader = asyncio.get_running_loop().create_task(self._read())
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_SECONDS)
        except TimeoutError:
            logger.warning("Redis did not confirm the subscription to %s", channel)

    async def unsubscribe(self, channel: str) -> None:
        self.hearers.pop(channel, None)
        self.confirming.pop(channel, None)
        async with self.lock:
            if self.pubsub is not None:
                await self.pubsub.unsubscribe(channel)

    def publish(self, channel: str, data: bytes) -> None:
        self.outbox.append((channel, data))
        if self.sending is None or self.sending.done():
            self.sending = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self.outbox:
            batch, self.outbox = self.outbox, []
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()
            except Exception:  # presence is at most once; the heartbeat repairs a lost leave
                logger.warning("could not publish %d presence changes", len(batch), exc_info=True)

    async def _read(self) -> None:
        while self.hearers or self.confirming:
            try:
                message = await self.pubsub.get_message(timeout=1.0)
                while message is not None:  # everything the connection holds, at once
                    self._take(message)
                    message = await self.pubsub.get_message(timeout=0)
            except Exception:  # redis-py reconnects and subscribes again on the next read
                logger.warning("could not hear presence changes", exc_info=True)
                await asyncio.sleep(1.0)

    def _take(self, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), message.get("channel")
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        if kind == "subscribe":
            confirmed = self.confirming.get(name)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif kind == "message" and name in self.hearers:
            try:
                change = orjson.loads(message["data"])
            except orjson.JSONDecodeError:
                logger.warning("an undecodable presence change on %s", name)
                return
            if isinstance(change, dict):
                self.hearers[name](change)


def _encode(device: dict[str, Any], until: float) -> str:
    return orjson.dumps({"d": device, "u": until}).decode()


def _decode(raw: bytes | str) -> tuple[dict[str, Any], float] | None:
    try:
        entry = orjson.loads(raw)
        device, until = entry["d"], float(entry["u"])
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(device, dict) or not isinstance(device.get("id"), str):
        return None
    if not isinstance(device.get("user"), str):
        return None
    return device, until


def _decode_all(raw: dict[bytes, bytes]) -> Entries:
    out: Entries = {}
    for raw_name, value in raw.items():
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        if name == JOINS:
            continue
        entry = _decode(value)
        # An entry that does not decode, or not under its own field, counts as expired: the
        # heartbeat removes it.
        ok = entry is not None and field(entry[0]) == name
        out[name] = entry if entry is not None and ok else (device_of(name), 0.0)
    return out


async def attached(pk: int) -> list[dict[str, Any]]:
    """The devices attached to session ``pk`` now, on every worker: one read of the roster
    (the REST presence endpoint), in the order of their ids, then users."""
    now = time.time()
    entries = await store().read(pk)
    live = [device for device, until in entries.values() if until > now]
    return sorted(live, key=lambda d: (d["id"], d["user"]))


_store: Store | None = None
_store_for: Any = None


def store() -> Store:
    """The roster of this deployment: on the channel layer's Redis, or in this process."""
    global _store, _store_for
    layers = getattr(settings, "CHANNEL_LAYERS", {})
    config = layers.get("default", {})
    if _store is not None and _store_for is config:
        return _store
    backend = str(config.get("BACKEND", ""))
    hosts = config.get("CONFIG", {}).get("hosts") or []
    new: Store
    if backend.startswith("channels_redis") and hosts:
        host = hosts[0]
        url = host if isinstance(host, str) else host.get("address", "")
        if isinstance(url, tuple | list):
            url = f"redis://{url[0]}:{url[1]}"
        prefix = config.get("CONFIG", {}).get("prefix", "asgi")
        new = RedisStore(str(url), prefix)
    else:
        new = MemoryStore()
    _store, _store_for = new, config
    return new
