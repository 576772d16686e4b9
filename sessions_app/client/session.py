"""A followed session, and runs that publish into it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sessions_app.client.connection import PublishError, RunCancelled

if TYPE_CHECKING:
    from sessions_app.client.connection import SessionsClient

BEGINNING = "-1"
CAUGHT_UP = "_CAUGHT_UP"  # marker in a session's inbox: the replay ends here


class Session:
    """Events of one session as they arrive, and publishing with an idempotent producer."""

    def __init__(self, client: SessionsClient, name: str, after: str, inbox: bool = False) -> None:
        self.client = client
        self.name = name
        self.last_offset = after
        self.caught_up = asyncio.Event()
        self.error: dict[str, Any] | None = None
        self.producer = {"id": f"{client.producer_prefix}-{uuid.uuid4().hex[:8]}", "epoch": 0}
        self._seq = 0
        self._publish_lock = asyncio.Lock()
        self._listeners: list[asyncio.Queue[dict[str, Any]]] = []
        # With an inbox, every event from the subscription on (the replay included) waits
        # in order for ``events()``, followed by a CAUGHT_UP marker where the replay ends.
        self.inbox: asyncio.Queue[dict[str, Any]] | None = asyncio.Queue() if inbox else None
        if self.inbox is not None:
            self._listeners.append(self.inbox)
        self.runs: dict[str, Run] = {}

    def subscribe_frame(self) -> dict[str, Any]:
        return {"op": "subscribe", "session": self.name, "after": self.last_offset}

    async def receive(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "caught_up":
            self.last_offset = frame["offset"]
            if self.inbox is not None and not self.caught_up.is_set():
                self.inbox.put_nowait({"type": CAUGHT_UP, "offset": frame["offset"]})
            self.caught_up.set()
        elif kind == "error" and not self.caught_up.is_set():
            self.error = frame
            self.caught_up.set()
        elif kind == "events":
            for event in frame["events"]:
                if event["offset"] <= self.last_offset and self.last_offset not in (
                    BEGINNING,
                    "now",
                ):
                    continue  # already seen (a resubscribe overlapping what we had)
                self.last_offset = event["offset"]
                await self._route(event)

    async def _route(self, event: dict[str, Any]) -> None:
        kind, run_id = event["type"], event.get("run")
        targets = [self.runs[run_id]] if run_id in self.runs else []
        if kind == "CANCEL" and not run_id:
            targets = list(self.runs.values())
        for run in targets:
            run.control(event)  # never awaits: this runs on the connection's reader
        for queue in self._listeners:
            queue.put_nowait(event)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Events in offset order: from the inbox if the session has one, else from now on."""
        queue = self.inbox
        if queue is None:
            queue = asyncio.Queue()
            self._listeners.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            if queue is not self.inbox:
                self._listeners.remove(queue)

    async def publish(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Append events; retried across reconnects with the same producer seq: lands once."""
        async with self._publish_lock:
            frame = {"op": "publish", "session": self.name, "events": events,
                     "producer": {**self.producer, "seq": self._seq}}  # fmt: skip
            self._seq += 1
            return await self.client.request(frame)

    async def send_message(self, text: str) -> dict[str, Any]:
        return await self.client.request({"op": "send_message", "session": self.name, "text": text})

    async def cancel(self, run: str | None = None) -> dict[str, Any]:
        return await self.client.request({"op": "cancel", "session": self.name, "run": run})

    def run(
        self, agent: str = "", parent: Run | str | None = None, run_id: str | None = None
    ) -> Run:
        """A run to use as ``async with session.run(...) as run``."""
        parent_id = parent.id if isinstance(parent, Run) else parent
        return Run(self, run_id or f"run-{uuid.uuid4().hex[:10]}", agent, parent_id)

    async def flush_all(self) -> None:
        for run in list(self.runs.values()):
            with contextlib.suppress(Exception):
                await run.flush()


class Run:
    """One agent turn. Text is coalesced; control (cancel, steer) arrives on its own."""

    def __init__(self, session: Session, run_id: str, agent: str, parent: str | None) -> None:
        self.session = session
        self.id = run_id
        self.agent = agent
        self.parent = parent
        self.cancelled = asyncio.Event()
        self._steers: asyncio.Queue[str] = asyncio.Queue()
        self._buffer: list[str] = []
        self._message: str | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._ended = False
        self._lock = asyncio.Lock()
        self._acks: list[asyncio.Task[None]] = []
        self._heart: asyncio.Task[None] | None = None

    def _envelope(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "run": self.id, **fields}
        if self.agent:
            event["agent"] = self.agent
        return event

    async def __aenter__(self) -> Run:
        self.session.runs[self.id] = self
        data = {"parentRunId": self.parent} if self.parent else None
        await self.session.publish(
            [self._envelope("RUN_STARTED", **({"data": data} if data else {}))]
        )
        self._heart = asyncio.create_task(self._heartbeat())
        return self

    async def _heartbeat(self) -> None:
        # While the agent thinks without writing, the server must still know it is alive.
        while not self._ended and not self.cancelled.is_set():
            await asyncio.sleep(self.session.client.heartbeat_seconds)
            with contextlib.suppress(PublishError):
                frame = {"op": "heartbeat", "session": self.session.name, "run": self.id}
                await self.session.client.request(frame)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        try:
            if self.cancelled.is_set():
                await asyncio.gather(*self._acks, return_exceptions=True)
                return exc_type in (None, RunCancelled)
            if exc_type is None:
                await self.flush()
                await self._end([self._envelope("RUN_FINISHED", data={"outcome": "success"})])
                return False
            if exc_type is RunCancelled:  # stopped from outside, e.g. its parent was cancelled
                await self.flush()
                await self._end(
                    [
                        self._envelope(
                            "RUN_FINISHED", data={"outcome": "cancelled", "reason": "parent"}
                        )
                    ]
                )
                return True
            await self.flush()
            await self._end(
                [
                    self._envelope(
                        "RUN_ERROR", data={"message": f"{exc_type.__name__}: {exc}"[:2000]}
                    )
                ]
            )
            return False
        finally:
            self.session.runs.pop(self.id, None)
            if self._heart is not None:
                self._heart.cancel()

    async def _end(self, events: list[dict[str, Any]]) -> None:
        if self._message is not None:
            events.insert(0, self._envelope("TEXT_MESSAGE_END", message=self._message))
            self._message = None
        self._ended = True
        await self.session.publish(events)

    # --- output --------------------------------------------------------------------------

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise RunCancelled(self.id)

    async def text(self, delta: str) -> None:
        """Stream text into the current message (started on first use)."""
        self._check()
        if self._message is None:
            self._message = f"m-{uuid.uuid4().hex[:10]}"
            await self.session.publish(
                [
                    self._envelope(
                        "TEXT_MESSAGE_START", message=self._message, data={"role": "assistant"}
                    )
                ]
            )
        self._buffer.append(delta)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.session.client.coalesce_seconds)
        with contextlib.suppress(RunCancelled, PublishError):
            await self.flush()

    async def flush(self) -> None:
        """Publish buffered text now, as one event."""
        async with self._lock:
            if not self._buffer or self._message is None or self._ended:
                return
            delta, self._buffer = "".join(self._buffer), []
            event = self._envelope(
                "TEXT_MESSAGE_CONTENT", message=self._message, data={"delta": delta}
            )
            await self.session.publish([event])

    async def end_message(self) -> None:
        await self.flush()
        if self._message is not None:
            await self.session.publish([self._envelope("TEXT_MESSAGE_END", message=self._message)])
            self._message = None

    async def tool_call(self, name: str, args: str, result: str | None = None) -> str:
        self._check()
        call_id = f"call-{uuid.uuid4().hex[:8]}"
        events = [
            self._envelope("TOOL_CALL_START", data={"toolCallId": call_id, "toolCallName": name}),
            self._envelope("TOOL_CALL_ARGS", data={"toolCallId": call_id, "delta": args}),
            self._envelope("TOOL_CALL_END", data={"toolCallId": call_id}),
        ]
        if result is not None:
            events.append(
                self._envelope("TOOL_CALL_RESULT", data={"toolCallId": call_id, "content": result})
            )
        await self.session.publish(events)
        return call_id

    async def state(self, snapshot: Any) -> None:
        self._check()
        await self.session.publish([self._envelope("STATE_SNAPSHOT", data={"snapshot": snapshot})])

    async def custom(self, name: str, value: Any) -> None:
        self._check()
        await self.session.publish([self._envelope("CUSTOM", data={"name": name, "value": value})])

    # --- control -------------------------------------------------------------------------

    def control(self, event: dict[str, Any]) -> None:
        """React to a control event at once; acknowledgements are published in the background."""
        kind = event["type"]
        if kind == "CANCEL" and not self.cancelled.is_set() and not self._ended:
            self.cancelled.set()
            self._acks.append(asyncio.create_task(self._acknowledge_cancel(event["offset"])))
        elif kind == "STEER":
            self._steers.put_nowait(event["data"]["text"])
            ack = self._envelope(
                "CONTROL_ACK", data={"action": "steer", "control": event["offset"]}
            )
            self._acks.append(asyncio.create_task(self._publish_quietly([ack])))

    async def _publish_quietly(self, events: list[dict[str, Any]]) -> None:
        with contextlib.suppress(PublishError):
            await self.session.publish(events)

    async def _acknowledge_cancel(self, control_offset: str) -> None:
        # What was generated before the cancel stays; then the acknowledgement and the end,
        # in one append: nothing of this run comes after it.
        async with self._lock:
            if self._flusher is not None:
                self._flusher.cancel()
            pending, self._buffer = "".join(self._buffer), []
            events = []
            if pending and self._message is not None:
                events.append(
                    self._envelope(
                        "TEXT_MESSAGE_CONTENT", message=self._message, data={"delta": pending}
                    )
                )
            events += [
                self._envelope("CONTROL_ACK", data={"action": "cancel", "control": control_offset}),
                self._envelope("RUN_FINISHED", data={"outcome": "cancelled"}),
            ]
            self._ended = True
            with contextlib.suppress(PublishError):  # e.g. the cancel already timed out
                await self.session.publish(events)

    async def steers(self) -> AsyncIterator[str]:
        """Steering instructions, in the order users sent them."""
        while not self.cancelled.is_set():
            yield await self._steers.get()

    def next_steer(self) -> str | None:
        """A waiting steering instruction, if any (non-blocking)."""
        try:
            return self._steers.get_nowait()
        except asyncio.QueueEmpty:
            return None
