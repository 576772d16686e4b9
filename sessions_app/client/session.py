"""A followed session, and runs that publish into it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sessions_app.client.errors import ConnectionClosed, PublishError, RunCancelled
from sessions_app.client.text import split_text

if TYPE_CHECKING:
    from sessions_app.client.connection import SessionsClient

logger = logging.getLogger("sessions_app.client")
BEGINNING = "-1"
CAUGHT_UP = "_CAUGHT_UP"  # marker in a session's inbox: the replay ends here
# Refusals after which the producer's place is unknown (the append may have landed, or the
# server counts differently): the next append starts a new producer epoch instead of reusing
# or skipping a sequence number. Any other refusal wrote nothing: its number is used again.
UNSETTLED = frozenset({"unavailable", "internal", "producer_seq_gap", "producer_stale_epoch"})


def _settled(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # read, so that a caller cancelled meanwhile leaves no warning


class Session:
    """Events of one session as they arrive, and publishing with an idempotent producer."""

    def __init__(self, client: SessionsClient, name: str, after: str, inbox: bool = False) -> None:
        self.client = client
        self.name = name
        self.last_offset = after
        self.caught_up = asyncio.Event()
        self.error: dict[str, Any] | None = None
        self.sent_on = 0  # the connection its subscribe frame went out on
        self.following = True  # subscribed (False: a ``client.writer`` not followed yet)
        self.producer: dict[str, Any] = {
            "id": f"{client.producer_prefix}-{uuid.uuid4().hex[:8]}",
            "epoch": 0,
        }
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

    def refused(self, frame: dict[str, Any]) -> None:
        """The server refused to (re)subscribe: the waiting ``client.session()`` raises."""
        if self.caught_up.is_set():
            logger.warning("resubscribing to %s was refused: %s", self.name, frame)
        self.error = frame
        self.caught_up.set()

    async def receive(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "caught_up":
            self.last_offset = frame["offset"]
            if self.inbox is not None and not self.caught_up.is_set():
                self.inbox.put_nowait({"type": CAUGHT_UP, "offset": frame["offset"]})
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
        """Append events; retried across reconnects with the same producer seq: lands once.

        Raises ``PublishError`` if the server refuses them (nothing of them was written).
        """
        return await self._produce({"op": "publish", "session": self.name, "events": events})

    async def _produce(self, frame: dict[str, Any]) -> dict[str, Any]:
        # Shielded: a caller that is cancelled does not leave its sequence number unsettled.
        task = asyncio.ensure_future(self._produce_in_order(frame))
        task.add_done_callback(_settled)  # its refusal is its caller's; none left unread
        return await asyncio.shield(task)

    async def _produce_in_order(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a writing frame with the next producer seq (one at a time, in call order)."""
        async with self._publish_lock:
            seq = self._seq
            frame = {**frame, "producer": {**self.producer, "seq": seq}}
            try:
                reply = await self.client.request(frame)
            except PublishError as exc:
                if exc.code in UNSETTLED:
                    self._new_epoch(exc.frame.get("current_epoch"))
                raise  # otherwise nothing was written: the next frame takes this seq
            except ConnectionClosed:
                self._new_epoch(None)
                raise
            self._seq = seq + 1
            return reply

    def _new_epoch(self, current: object) -> None:
        epoch = self.producer["epoch"] + 1
        if isinstance(current, int) and current >= epoch:
            epoch = current + 1
        self.producer = {**self.producer, "epoch": epoch}
        self._seq = 0

    # What a user's device does. Each goes through the session's producer, so a frame re-sent
    # after a reconnect lands once, and its repeat is answered like the first (never with
    # run_ended because the first one worked).

    async def send_message(self, text: str, message: str | None = None) -> dict[str, Any]:
        """Append a user message; the ack's ``message`` is its id (chosen here unless given)."""
        frame = {"op": "send_message", "session": self.name, "text": text,
                 "message": message or f"u-{uuid.uuid4().hex[:12]}"}  # fmt: skip
        return await self._produce(frame)

    async def cancel(self, run: str | None = None, reason: str | None = None) -> dict[str, Any]:
        """Cancel a run (omitted: every run of the session still going)."""
        frame: dict[str, Any] = {"op": "cancel", "session": self.name, "run": run}
        if reason is not None:
            frame["reason"] = reason
        return await self._produce(frame)

    async def steer(self, run: str, text: str) -> dict[str, Any]:
        """A new instruction for a running run."""
        return await self._produce({"op": "steer", "session": self.name, "run": run, "text": text})

    async def interrupt(
        self, text: str, run: str | None = None, message: str | None = None
    ) -> dict[str, Any]:
        """Cancel a run (omitted: every run) and send a user message, in one append."""
        frame = {"op": "interrupt", "session": self.name, "run": run, "text": text,
                 "message": message or f"u-{uuid.uuid4().hex[:12]}"}  # fmt: skip
        return await self._produce(frame)

    async def feedback(
        self,
        message: str,
        rating: str,
        comment: str | None = None,
        correction: str | None = None,
    ) -> dict[str, Any]:
        """Rate an assistant message ``"up"`` or ``"down"`` (a later rating replaces this one),
        with an optional comment and corrected answer; the server records who rated."""
        frame = {"op": "feedback", "session": self.name, "message": message, "rating": rating,
                 "comment": comment, "correction": correction}  # fmt: skip
        return await self._produce(frame)

    def run(
        self,
        agent: str = "",
        parent: Run | str | None = None,
        run_id: str | None = None,
        turn: int | None = None,
        *,
        lazy: bool = False,
    ) -> Run:
        """A run to use as ``async with session.run(...) as run``; ``turn`` names the claimed
        turn it answers (its RUN_STARTED is refused if the claim was lost).

        ``lazy``: the RUN_STARTED is not sent on entering but with the run's first append, or
        alone by ``run.begin()``: a run that answers at once is one append, not two.
        """
        parent_id = parent.id if isinstance(parent, Run) else parent
        run = Run(self, run_id or f"run-{uuid.uuid4().hex[:10]}", agent, parent_id)
        run.turn = turn
        run.lazy = lazy
        return run

    async def flush_all(self) -> list[Exception]:
        """Publish every run's buffered text; the errors that stopped a publish, not raised
        (each run keeps its own: ``run.error``)."""
        failed: list[Exception] = []
        for run in list(self.runs.values()):
            if not run.unsent:
                continue  # nothing to lose (an earlier refusal was raised to its caller)
            try:
                await run.flush()
            except Exception as exc:
                failed.append(exc)
        return failed


class Run:
    """One agent turn. Text is coalesced; control (cancel, steer) arrives on its own.

    A publish of the run that the server refuses is never dropped quietly: it is kept in
    ``run.error`` and raised (``PublishError``) by the run's next call, and ``async with run``
    then ends the run with ``RUN_ERROR`` and lets the error out.
    """

    def __init__(self, session: Session, run_id: str, agent: str, parent: str | None) -> None:
        self.session = session
        self.id = run_id
        self.agent = agent
        self.parent = parent
        self.turn: int | None = None
        self.cancelled = asyncio.Event()
        self.error: PublishError | None = None
        self._steers: asyncio.Queue[str] = asyncio.Queue()
        self._buffer: list[str] = []
        self._message: str | None = None
        self._unstarted = False  # the message's TEXT_MESSAGE_START goes with its first text
        self._flusher: asyncio.Task[None] | None = None
        self._ended = False
        self._lock = asyncio.Lock()
        self._acks: list[asyncio.Task[None]] = []
        self._heart: asyncio.Task[None] | None = None
        self.lazy = False
        self._start: list[dict[str, Any]] = []  # a lazy run's RUN_STARTED, not sent yet
        self._unborn = False  # the append carrying RUN_STARTED was refused

    @property
    def unsent(self) -> bool:
        """Whether text written into the run is still waiting in its coalescing buffer."""
        return bool(self._buffer) and not self._ended

    def _envelope(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "run": self.id, **fields}
        if self.agent:
            event["agent"] = self.agent
        return event

    async def __aenter__(self) -> Run:
        self.session.runs[self.id] = self
        data: dict[str, Any] = {"parentRunId": self.parent} if self.parent else {}
        if self.turn is not None:
            data["turn"] = self.turn
        self._start = [self._envelope("RUN_STARTED", **({"data": data} if data else {}))]
        if not self.lazy:
            try:
                await self.begin()
            except BaseException:
                self.session.runs.pop(self.id, None)  # refused: no run to keep or flush
                raise
        self._heart = asyncio.create_task(self._heartbeat())
        return self

    async def begin(self) -> None:
        """Send a lazy run's RUN_STARTED now if no append has carried it yet (a refusal, e.g.
        ``turn_fenced``, is kept and raised here and by the run's next call)."""
        if self._start:
            try:
                await self._publish([])
            except PublishError as exc:
                self.error = exc
                raise

    async def _publish(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Append events of this run; the first append also carries its RUN_STARTED."""
        start, self._start = self._start, []
        try:
            return await self.session.publish([*start, *events])
        except PublishError:
            self._unborn = bool(start)  # the run does not exist: nothing of it can land
            raise

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
                acks = await asyncio.gather(*self._acks, return_exceptions=True)
                for failed in acks:  # refusals are handled where they happen; not the rest
                    if isinstance(failed, Exception) and not isinstance(failed, PublishError):
                        raise failed
                if self.error is not None and exc_type in (None, RunCancelled):
                    raise self.error  # what was written before the cancel could not land
                return exc_type in (None, RunCancelled)
            if exc_type is None or exc_type is RunCancelled:
                if exc_type is None:
                    outcome = {"outcome": "success"}
                else:  # stopped from outside, e.g. its parent was cancelled
                    outcome = {"outcome": "cancelled", "reason": "parent"}
                try:
                    await self._finish([self._envelope("RUN_FINISHED", data=outcome)])
                except PublishError as failed:  # refused: the run ends with RUN_ERROR
                    await self._fail(failed)
                    raise
                return exc_type is RunCancelled
            await self._fail(exc)
            return False
        finally:
            self.session.runs.pop(self.id, None)
            if self._heart is not None:
                self._heart.cancel()

    async def _fail(self, exc: BaseException) -> None:
        """End the run with RUN_ERROR (after the text that can still land)."""
        if self._unborn:
            return  # its RUN_STARTED was refused (e.g. turn_fenced): there is no run to end
        if self.error is None:
            with contextlib.suppress(PublishError):
                await self.flush()
        data = {"message": f"{type(exc).__name__}: {exc}"[:2000]}
        if isinstance(exc, PublishError) and isinstance(exc.code, str):
            data["code"] = exc.code
        try:
            await self._end([self._envelope("RUN_ERROR", data=data)])
        except PublishError as refused:  # e.g. the server ended the run already
            logger.warning("run %s: RUN_ERROR was refused: %s", self.id, refused)

    async def _finish(self, events: list[dict[str, Any]]) -> None:
        """Publish the buffered text, the message's end and ``events`` (the run's end) in one
        append (in several when the text is long: the end goes with its last piece)."""
        async with self._lock:
            if self.error is not None:
                raise self.error
            delta, self._buffer = "".join(self._buffer), []
            if self._message is not None:
                end = self._envelope("TEXT_MESSAGE_END", message=self._message)
                events = [*self._opening(), end, *events] if not delta else [end, *events]
            else:
                delta = ""
            self._ended = True
            await self._publish_text(delta, then=events)
            self._message = None

    async def _end(self, events: list[dict[str, Any]]) -> None:
        if self._message is not None:
            end = self._envelope("TEXT_MESSAGE_END", message=self._message)
            events[:0] = [*self._opening(), end]
            self._message = None
        self._ended = True
        await self._publish(events)

    # --- output --------------------------------------------------------------------------

    def _check(self) -> None:
        if self.error is not None:
            raise self.error
        if self.cancelled.is_set():
            raise RunCancelled(self.id)

    async def text(self, delta: str) -> None:
        """Stream text into the current message (started on first use).

        Raises ``PublishError`` if an earlier publish of this run could not land.
        """
        self._check()
        if self._message is None:  # its start goes out with its first text (one append)
            self._message = f"m-{uuid.uuid4().hex[:10]}"
            self._unstarted = True
        self._buffer.append(delta)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        window = self.session.client.coalesce_seconds
        await asyncio.sleep(window)
        clock = asyncio.get_running_loop().time
        while self._buffer and self.error is None and not self._ended:
            began = clock()
            try:
                await self.flush()
            except (RunCancelled, PublishError):
                return  # a refusal is kept in self.error and raised by the run's next call
            # One append per window: text written meanwhile waits out the rest of it (an ack
            # can come back in a few milliseconds). After a flush that took longer than the
            # window (e.g. through a reconnect), what was written meanwhile goes at once.
            rest = window - (clock() - began)
            if rest > 0 and self._buffer:
                await asyncio.sleep(rest)

    async def flush(self) -> None:
        """Publish buffered text now (split over several events if it is long)."""
        async with self._lock:
            if self.error is not None:
                raise self.error
            if not self._buffer or self._message is None or self._ended:
                return
            delta, self._buffer = "".join(self._buffer), []
            await self._publish_text(delta)

    async def _publish_text(self, delta: str, then: list[dict[str, Any]] | None = None) -> None:
        """Publish ``delta`` as TEXT_MESSAGE_CONTENT events of a size the server accepts, each
        in its own append; ``then`` goes in the last append. A refusal is kept and raised."""
        pieces = split_text(delta, self.session.client.max_event_bytes) if delta else []
        appends = [
            [self._envelope("TEXT_MESSAGE_CONTENT", message=self._message, data={"delta": piece})]
            for piece in pieces
        ] or [[]]
        appends[-1] += then or []
        if pieces:
            appends[0][:0] = self._opening()
        for events in appends:
            if not events:
                continue
            try:
                await self._publish(events)
            except PublishError as exc:
                self.error = exc
                raise
            self._unstarted = False

    def _opening(self) -> list[dict[str, Any]]:
        """The current message's TEXT_MESSAGE_START while it has not been published."""
        if not self._unstarted or self._message is None:
            return []
        return [
            self._envelope("TEXT_MESSAGE_START", message=self._message, data={"role": "assistant"})
        ]

    async def end_message(self) -> None:
        await self.flush()
        if self._message is not None:
            end = self._envelope("TEXT_MESSAGE_END", message=self._message)
            await self._publish([*self._opening(), end])
            self._unstarted = False
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
        await self._publish(events)
        return call_id

    async def state(self, snapshot: Any) -> None:
        self._check()
        await self._publish([self._envelope("STATE_SNAPSHOT", data={"snapshot": snapshot})])

    async def usage(
        self,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost: float | None = None,
        currency: str | None = None,
        first_token_ms: float | None = None,
        latency_ms: float | None = None,
    ) -> None:
        """Report what this run cost (``sessions.USAGE``); several reports add up. Report
        before the run ends: an ended run takes nothing more."""
        fields = {"model": model, "input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cost": cost, "currency": currency, "first_token_ms": first_token_ms,
                  "latency_ms": latency_ms}  # fmt: skip
        value = {key: item for key, item in fields.items() if item is not None}
        await self.custom("sessions.USAGE", value)

    async def custom(self, name: str, value: Any) -> None:
        self._check()
        await self._publish([self._envelope("CUSTOM", data={"name": name, "value": value})])

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
        try:
            await self._publish(events)
        except PublishError as exc:  # an acknowledgement, no text: the run goes on
            logger.warning("run %s: an acknowledgement was refused: %s", self.id, exc)

    async def _acknowledge_cancel(self, control_offset: str) -> None:
        # What was generated before the cancel stays; then the acknowledgement and the end,
        # in the last append: nothing of this run comes after it.
        async with self._lock:
            if self._flusher is not None:
                self._flusher.cancel()
            pending, self._buffer = "".join(self._buffer), []
            if self._message is None:
                pending = ""
            events = [
                self._envelope("CONTROL_ACK", data={"action": "cancel", "control": control_offset}),
                self._envelope("RUN_FINISHED", data={"outcome": "cancelled"}),
            ]
            self._ended = True
            try:
                await self._publish_text(pending, then=events)
            except PublishError as exc:
                # run_ended: the server stopped waiting for this acknowledgement (after
                # CANCEL_ACK_TIMEOUT) and ended the run itself; anything else is raised by
                # ``async with run``.
                if exc.code == "run_ended" and self.error is exc:
                    self.error = None
                    logger.warning("run %s: cancel acknowledged too late: %s", self.id, exc)

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

    @property
    def pending_steers(self) -> int:
        """How many steering instructions arrived that the agent has not taken yet."""
        return self._steers.qsize()

    @property
    def message_id(self) -> str | None:
        """The id of the assistant message this run is writing, None between messages."""
        return self._message

    # --- streamed tool calls, reasoning and steps (what the framework adapters stream) ----
    # Each is its own append, in call order after the text written before it: a tool call
    # or a reasoning message first ends the text message in progress.

    _reasoning: str | None = None  # the reasoning message in progress

    async def tool_start(self, name: str, call_id: str | None = None) -> str:
        """Start a tool call whose arguments follow (``tool_args``); returns its id."""
        self._check()
        await self.end_reasoning()
        await self.end_message()
        call_id = call_id or f"call-{uuid.uuid4().hex[:8]}"
        data = {"toolCallId": call_id, "toolCallName": name}
        await self._publish([self._envelope("TOOL_CALL_START", data=data)])
        return call_id

    async def tool_args(self, call_id: str, delta: str) -> None:
        """A piece of a started tool call's arguments (JSON text, streamed as the model writes)."""
        self._check()
        for piece in self._pieces(delta):  # each in its own append, as text is
            data = {"toolCallId": call_id, "delta": piece}
            await self._publish([self._envelope("TOOL_CALL_ARGS", data=data)])

    async def tool_end(self, call_id: str) -> None:
        """The tool call's arguments are complete (the tool may now run)."""
        self._check()
        await self._publish([self._envelope("TOOL_CALL_END", data={"toolCallId": call_id})])

    async def tool_result(self, call_id: str, content: str) -> None:
        """What the tool returned (text; JSON for anything else).

        A result longer than one event holds is shown cut, with how much was left out (the
        model got all of it; the log keeps what users are shown).
        """
        from sessions_app.client.text import json_size

        self._check()
        limit = self.session.client.max_event_bytes
        if json_size(content) > limit:
            shown = split_text(content, max(limit - 64, 12))[0]
            content = f"{shown}\n[… {len(content) - len(shown)} more characters not shown]"
        data = {"toolCallId": call_id, "content": content}
        await self._publish([self._envelope("TOOL_CALL_RESULT", data=data)])

    async def reasoning(self, delta: str) -> None:
        """Stream the model's visible reasoning (a reasoning message, started on first use)."""
        self._check()
        if not delta:
            return
        events = []
        if self._reasoning is None:
            await self.end_message()
            self._reasoning = f"r-{uuid.uuid4().hex[:10]}"
            events += [
                self._envelope("REASONING_START", message=self._reasoning),
                self._envelope("REASONING_MESSAGE_START", message=self._reasoning),
            ]
        for piece in self._pieces(delta):  # the first with the start, each in its own append
            events.append(
                self._envelope(
                    "REASONING_MESSAGE_CONTENT", message=self._reasoning, data={"delta": piece}
                )
            )
            await self._publish(events)
            events = []

    async def end_reasoning(self) -> None:
        """End the reasoning message in progress, if any."""
        message = self._reasoning
        if message is not None:
            self._reasoning = None
            await self._publish(
                [
                    self._envelope("REASONING_MESSAGE_END", message=message),
                    self._envelope("REASONING_END", message=message),
                ]
            )

    def _pieces(self, delta: str) -> list[str]:
        """``delta`` cut to the size of an event (none if empty)."""
        return split_text(delta, self.session.client.max_event_bytes) if delta else []

    async def step(self, name: str, *, finished: bool = False) -> None:
        """A named step of the agent (e.g. a graph node) starts, or with ``finished`` ends."""
        self._check()
        kind = "STEP_FINISHED" if finished else "STEP_STARTED"
        await self._publish([self._envelope(kind, data={"stepName": name})])
