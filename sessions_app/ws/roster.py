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
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from typing import Any, Protocol

from django.conf import settings

logger = logging.getLogger(__name__)

Entries = dict[str, tuple[dict[str, Any], float]]  # field -> (device, expiry, epoch seconds)
Wanted = dict[int, list[dict[str, Any]]]  # session pk -> devices to renew there


class Store(Protocol):
    async def join(
        self, pk: int, device: dict[str, Any], until: float
    ) -> tuple[bool, Entries, int]:
        """Write ``device`` into session ``pk``'s roster; return whether it was absent (or
        expired) before, the roster as it is now (expired entries included), and the number of
        this join in the session (every join up to it is in that roster)."""

    async def leave(self, pk: int, key: str) -> bool:
        """Remove the device of field ``key``; True if this call removed it."""

    async def renew(self, rosters: Wanted, until: float) -> dict[int, Entries]:
        """Write these devices with a new expiry and read these sessions' rosters, at once."""

    async def drop_expired(self, pk: int, keys: list[str], now: float) -> list[str]:
        """Delete the entries of fields ``keys`` still expired at ``now``; return those deleted."""

    async def read(self, pk: int) -> Entries:
        """Session ``pk``'s roster as it is now (expired entries included)."""


class MemoryStore:
    """The roster of a single process (the in-memory channel layer reaches no other)."""

    def __init__(self) -> None:
        self.rosters: dict[int, Entries] = {}
        self.joins = 0

    async def join(
        self, pk: int, device: dict[str, Any], until: float
    ) -> tuple[bool, Entries, int]:
        roster = self.rosters.setdefault(pk, {})
        before = roster.get(field(device))
        roster[field(device)] = (dict(device), until)
        self.joins += 1
        return before is None or before[1] <= time.time(), dict(roster), self.joins

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


POOL_SIZE = 8  # connections to Redis per worker for the roster
JOINS = "#joins"  # a field of the hash counting its joins (device ids never start with #)


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

    def key(self, pk: int) -> str:
        return f"{self.prefix}:presence:{pk}"

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
        self, pk: int, device: dict[str, Any], until: float
    ) -> tuple[bool, Entries, int]:
        key = self.key(pk)
        async with self.client().pipeline(transaction=True) as pipe:
            pipe.hget(key, field(device))
            pipe.hset(key, field(device), _encode(device, until))
            pipe.hincrby(key, JOINS, 1)
            pipe.pexpire(key, self.key_ttl_ms)
            pipe.hgetall(key)
            before, _, joins, _, raw = await pipe.execute()
        old = _decode(before) if before is not None else None
        return old is None or old[1] <= time.time(), _decode_all(raw), int(joins)

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


def _encode(device: dict[str, Any], until: float) -> str:
    return json.dumps({"d": device, "u": until}, separators=(",", ":"))


def _decode(raw: bytes | str) -> tuple[dict[str, Any], float] | None:
    try:
        entry = json.loads(raw)
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
