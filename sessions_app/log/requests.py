"""What an append asks of the log, and what it answers: one request type for every door.

A WebSocket publish, a REST batch, an SDK or job-bridge append only fill ``session_pk``,
``items`` and perhaps ``producer``. The Durable Streams door also sets its protocol's optional
fields (``stream_seq``, ``close``, ``ttl``, ``max_bytes``, ``when_gone``); each is judged by the
same commit (``log.commit``) under the session row's lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sessions_app.domain import producers
from sessions_app.domain.judgement import FEEDBACK

# Event types the run tracker reads (``runs.RunTracker``): an append carrying one is never
# written by the one-statement path, which keeps no run bookkeeping.
TRACKED_TYPES = frozenset({"CANCEL", "CONTROL_ACK"})


@dataclass
class Item:
    """One entry to append: its stored body, the columns the admin filters on, and for
    events that start, end or control runs, their ``data`` and ``agent`` (see runs.py)."""

    body: str | bytes
    type: str = ""
    run: str = ""
    data: dict[str, Any] | None = None
    agent: str = ""

    @property
    def size(self) -> int:
        return len(self.body.encode() if isinstance(self.body, str) else self.body)

    @property
    def tracked(self) -> bool:
        return bool(self.run) or self.type in TRACKED_TYPES or self.asks

    @property
    def rates(self) -> bool:
        """A rating (``sessions.FEEDBACK``): ``log.ratings`` records it in the commit."""
        return self.type == "CUSTOM" and (self.data or {}).get("name") == FEEDBACK

    @property
    def asks(self) -> bool:
        """A user message's start: the message may ask for an answer (a turn, ``turns``)."""
        return self.type == "TEXT_MESSAGE_START" and (self.data or {}).get("role") == "user"


@dataclass(frozen=True)
class Locked:
    """The session row as the commit holds it locked, for a door's ``when_gone``."""

    head: int
    closed: bool
    deleted: bool
    expires_at: Any


@dataclass
class AppendRequest:
    """One append. Only ``session_pk`` and ``items`` are needed; the rest are optional rules.

    producer    idempotent producer (id, epoch, seq): a retry lands once
    stream_seq  Durable Streams ``Stream-Seq``: must sort above the last one the session took
    close       close the session with this append (a lone close of a closed session is fine)
    has_body    a body was sent even if it made no items (a closed session refuses it unread)
    ttl         the session's sliding TTL in seconds, pushed ahead by the append
    max_bytes   the most the session may hold; an append past it is refused
    when_gone   a door's own answer (it raises) for a session deleted or expired since the
                door looked it up; without it, NotFound
    turn_input  what the client sent with a user message beyond its text (the AG-UI door's
                tools, context, state): kept on the turn the message makes

    ``turn_plans``, ``turn_abandon`` and ``turn_wake`` (agent names that have new work) are
    filled by the commit (``turns.TurnTracker``).
    """

    session_pk: int
    items: Sequence[Item]
    producer: producers.ProducerClaim | None = None
    stream_seq: str | None = None
    close: bool = False
    has_body: bool | None = None
    ttl: int | None = None
    max_bytes: int | None = None
    when_gone: Callable[[Locked], None] | None = None
    turn_input: dict[str, Any] | None = None
    turn_plans: list[tuple[int, str, str]] = field(default_factory=list)
    turn_abandon: list[int] = field(default_factory=list)
    turn_wake: set[str] = field(default_factory=set)

    @property
    def body_sent(self) -> bool:
        return bool(self.items) if self.has_body is None else self.has_body

    @property
    def plain(self) -> bool:
        """Only entries, nothing to judge under the lock first: the one-statement path may
        write it (it still refuses a closed, deleted, expired or full session)."""
        return (
            bool(self.items)
            and self.producer is None
            and self.stream_seq is None
            and not self.close
            and not any(item.tracked or item.rates for item in self.items)
        )


@dataclass(frozen=True)
class AppendResult:
    """What an append did. ``first..last`` are its entries' offsets (for a duplicate: the
    original's when it was the producer's last append, else none); ``head`` is the session's
    head after it (Durable Streams' ``Stream-Next-Offset``)."""

    first: int
    last: int
    duplicate: bool = False
    head: int = -1
    closed: bool = False
    producer_epoch: int | None = None
    producer_seq: int | None = None

    def __post_init__(self) -> None:
        if self.head < 0:
            object.__setattr__(self, "head", max(self.last, 0))

    @property
    def seqs(self) -> range:
        return range(self.first, self.last + 1)

    @property
    def wrote(self) -> int:
        """How many entries this request wrote."""
        return 0 if self.duplicate else max(0, self.last - self.first + 1)


# Runs one statement on the loop's connection: its rows, or None when there is no connection.
Fetch = Callable[[str, list[Any]], Awaitable[list[Any] | None]]


class Deferred(Protocol):
    """An append a door could not resolve to a session yet (the Durable Streams door posts by
    name): the log resolves it just before its commit, in the writer thread, or on the event
    loop's own connection when it is alone (``log.lanes``)."""

    @property
    def plain(self) -> bool:
        """Whether it may be a plain append (``AppendRequest.plain``) once resolved."""
        ...

    def resolve(self) -> AppendRequest:
        """Look the session up and build the request (writer thread; raises SessionError)."""
        ...

    async def resolve_on_loop(self, fetch: Fetch) -> AppendRequest | None:
        """The same over the event loop's connection; None: leave it to the writer thread."""
        ...

    def written_nothing(self) -> None:
        """The loop's statement wrote nothing (the session changed since it was looked up)."""
        ...


Pending = AppendRequest | Deferred
