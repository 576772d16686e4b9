"""What every framework adapter does to a run, as plain data, and the one place that does it.

Each adapter turns its framework's stream events into *actions* with a pure function (tested
from recorded events, no I/O); ``Driver`` applies them to the SDK's ``Run``. ``key`` names the
run an action is for: ``""`` is the turn's own run, any other key a child run opened by
``Enter`` (a handoff's or a sub-agent's) and closed by ``Leave``. ``Usage`` is what a model
call cost as the framework reported it; the driver times and prices it (``usage_report``).

Importable without Django and without any agent framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sessions_app.client.errors import RunCancelled

if TYPE_CHECKING:
    from sessions_app.client import Run


def require(module: str, adapter: str, package: str, extra: str) -> Any:
    """The framework ``module`` an adapter needs (a name in the adapter's own code), or an
    ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"the {adapter} adapter needs {package}: pip install 'django-ai-stack[{extra}]'"
        ) from exc


@dataclass(frozen=True)
class Text:
    delta: str
    key: str = ""


@dataclass(frozen=True)
class TextEnd:
    key: str = ""


@dataclass(frozen=True)
class Reasoning:
    delta: str
    key: str = ""


@dataclass(frozen=True)
class ReasoningEnd:
    key: str = ""


@dataclass(frozen=True)
class ToolStart:
    call_id: str
    name: str
    key: str = ""


@dataclass(frozen=True)
class ToolArgs:
    call_id: str
    delta: str
    key: str = ""


@dataclass(frozen=True)
class ToolEnd:
    call_id: str
    key: str = ""


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    content: str
    key: str = ""


@dataclass(frozen=True)
class State:
    snapshot: Any
    key: str = ""


@dataclass(frozen=True)
class Step:
    name: str
    finished: bool = False
    key: str = ""


@dataclass(frozen=True)
class Custom:
    name: str
    value: Any
    key: str = ""


@dataclass(frozen=True)
class Enter:
    """Open a child run for ``agent`` under the run named by ``parent``."""

    key: str
    agent: str
    parent: str = ""


@dataclass(frozen=True)
class Leave:
    key: str


@dataclass(frozen=True)
class Usage:
    """Tokens of one or more model calls as the framework reported them (None: not reported)."""

    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    key: str = ""


@dataclass(frozen=True)
class Prices:
    """A model's prices per million input and output tokens."""

    input: float
    output: float
    currency: str = "USD"


# One price for every model, or one per model name (a graph may call several models).
PriceList = Prices | Mapping[str, Prices]

Action = (
    Text | TextEnd | Reasoning | ReasoningEnd | ToolStart | ToolArgs | ToolEnd | ToolResult
    | State | Step | Custom | Enter | Leave | Usage
)  # fmt: skip
# What the model writes: the first of these is its first token.
WRITTEN = (Text, Reasoning, ToolStart, ToolArgs)


def token_count(value: Any) -> int | None:
    """A token count a framework reported, if it is one ``run.usage`` accepts."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**15:
        return value
    return None


def usage_report(
    usage: Usage,
    prices: PriceList | None = None,
    first_token_ms: float | None = None,
    latency_ms: float | None = None,
) -> dict[str, Any]:
    """What ``run.usage`` gets for ``usage``: its valid tokens and model name, their cost if
    ``prices`` price that model and both counts are known, and the measured times."""
    report: dict[str, Any] = {}
    if isinstance(usage.model, str) and usage.model:
        report["model"] = usage.model[:200]
    for key in ("input_tokens", "output_tokens"):
        count = token_count(getattr(usage, key))
        if count is not None:
            report[key] = count
    price = prices.get(usage.model or "") if isinstance(prices, Mapping) else prices
    if price is not None and "input_tokens" in report and "output_tokens" in report:
        spent = (
            price.input * report["input_tokens"] + price.output * report["output_tokens"]
        ) / 1e6
        if math.isfinite(spent) and 0 <= spent <= 1e15:  # else the server refuses the report
            report["cost"] = spent
            if isinstance(price.currency, str) and price.currency:  # an empty one is no currency
                report["currency"] = price.currency[:8]
    if first_token_ms is not None:
        report["first_token_ms"] = first_token_ms
    if latency_ms is not None:
        report["latency_ms"] = latency_ms
    return report


def as_text(value: Any) -> str:
    """A tool's result or arguments as the text an event carries (JSON unless already text)."""
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), ensure_ascii=False)


def jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold (models, dataclasses, dates) turned into JSON."""
    return json.loads(json.dumps(value, default=_fallback, allow_nan=False))


def _fallback(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)  # pydantic models (langchain messages too)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def coalesce(actions: Iterable[Action]) -> list[Action]:
    """Join consecutive deltas of the same stream (fewer appends; the same text when folded)."""
    out: list[Action] = []
    for action in actions:
        last = out[-1] if out else None
        if isinstance(action, Reasoning) and isinstance(last, Reasoning) and last.key == action.key:
            out[-1] = Reasoning(last.delta + action.delta, action.key)
        elif (
            isinstance(action, ToolArgs)
            and isinstance(last, ToolArgs)
            and (last.key, last.call_id) == (action.key, action.call_id)
        ):
            out[-1] = ToolArgs(action.call_id, last.delta + action.delta, action.key)
        else:
            out.append(action)
    return out


class Driver:
    """Applies actions to the turn's run and the child runs they open.

    Reasoning and tool argument deltas are held for up to the client's ``coalesce_seconds``
    (as ``run.text`` holds text) and joined: a model streaming thousands of thinking tokens
    makes a few appends, not one per token. Anything else sends what is held first.

    It also times the turn for ``Usage``: each report's ``latency_ms`` is the time since the
    previous report (or the start), so a run's reports add up to its model time; the first
    report into the turn's own run carries ``first_token_ms``, from the start to the first
    thing the model wrote.
    """

    def __init__(self, run: Run, prices: PriceList | None = None) -> None:
        self.runs: dict[str, Run] = {"": run}
        self.prices = prices
        self.started = self.reported = time.monotonic()
        self.first_token: float | None = None
        self._timed_first = False
        self.tokens = {"input_tokens": 0, "output_tokens": 0}  # reported so far, all runs
        self.held: Reasoning | ToolArgs | None = None
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None  # a held delta's publish that failed

    async def apply(self, actions: Iterable[Action]) -> None:
        for action in coalesce(actions):
            if self.first_token is None and isinstance(action, WRITTEN):
                self.first_token = time.monotonic()
            async with self._lock:
                if self._failed is not None:
                    raise self._failed
                if isinstance(action, Reasoning | ToolArgs):
                    await self._hold(action)
                    continue
                await self._release()
                await self._apply(action)

    def fail(self, exc: BaseException) -> None:
        """A write made for this driver elsewhere failed: the next ``apply`` raises it."""
        self._failed = self._failed or exc

    async def _hold(self, action: Reasoning | ToolArgs) -> None:
        joined = coalesce([self.held, action]) if self.held is not None else [action]
        if len(joined) > 1:  # another stream: what is held goes first
            await self._release()
        self.held = cast("Reasoning | ToolArgs", joined[-1])
        if self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._release_later())

    async def _release_later(self) -> None:
        await asyncio.sleep(self.runs[""].session.client.coalesce_seconds)
        async with self._lock:
            try:
                await self._release()
            except Exception as exc:  # raised by the next apply() or by close()
                self._failed = exc

    async def _release(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            await self._apply(held)

    async def _apply(self, action: Action) -> None:
        if isinstance(action, Enter):
            await self._enter(action)
            return
        if isinstance(action, Leave):
            await self._leave(action.key, None)
            return
        run = self.runs.get(action.key) or self.runs[""]
        match action:
            case Text(delta=delta):
                await run.end_reasoning()
                await run.text(delta)
            case TextEnd():
                await run.end_message()
            case Reasoning(delta=delta):
                await run.reasoning(delta)
            case ReasoningEnd():
                await run.end_reasoning()
            case ToolStart(call_id=call_id, name=name):
                await run.tool_start(name, call_id)
            case ToolArgs(call_id=call_id, delta=delta):
                await run.tool_args(call_id, delta)
            case ToolEnd(call_id=call_id):
                await run.tool_end(call_id)
            case ToolResult(call_id=call_id, content=content):
                await run.tool_result(call_id, content)
            case State(snapshot=snapshot):
                await run.state(snapshot)
            case Step(name=name, finished=finished):
                await run.step(name, finished=finished)
            case Custom(name=name, value=value):
                await run.custom(name, value)
            case Usage():
                await run.usage(**self._timed(action))

    def _timed(self, usage: Usage) -> dict[str, Any]:
        now, first = time.monotonic(), None
        latency, self.reported = (now - self.reported) * 1000, now
        if not usage.key and not self._timed_first and self.first_token is not None:
            first, self._timed_first = (self.first_token - self.started) * 1000, True
        report = usage_report(usage, self.prices, first, latency)
        for name in self.tokens:
            self.tokens[name] += report.get(name, 0)
        return report

    async def _enter(self, action: Enter) -> None:
        if action.key in self.runs:
            return
        parent = self.runs.get(action.parent) or self.runs[""]
        await parent.end_reasoning()
        await parent.end_message()
        child = parent.session.run(agent=action.agent, parent=parent)
        await child.__aenter__()
        self.runs[action.key] = child

    async def _leave(self, key: str, exc: BaseException | None) -> None:
        child = self.runs.pop(key, None) if key else None
        if child is None:
            return
        await child.end_reasoning()
        if exc is None:
            await child.__aexit__(None, None, None)
        else:
            await child.__aexit__(type(exc), exc, exc.__traceback__)

    async def close(self, exc: BaseException | None = None) -> None:
        """End the child runs still open (newest first) and the turn run's open streams.

        ``exc``: why the turn stops early; a cancel ends the children as cancelled.
        """
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if exc is None:
                await self._release()
                if self._failed is not None:
                    raise self._failed
            elif not isinstance(exc, asyncio.CancelledError | RunCancelled):
                with contextlib.suppress(Exception):  # what the model said before it failed
                    await self._release()
            self.held = None
        if isinstance(exc, asyncio.CancelledError):
            exc = RunCancelled(self.runs[""].id)
        for key in reversed([key for key in self.runs if key]):
            await self._leave(key, exc)
        if exc is None:
            await self.runs[""].end_reasoning()


async def until_cancelled(run: Run, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends or a user cancels ``run``: then ``work``'s task is cancelled,
    which stops the framework's run inside it (its stream is closed, its tools stop)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(run.cancelled.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RunCancelled):
                await task
    if task.cancelled():
        return
    failure = task.exception()
    if isinstance(failure, RunCancelled) and run.cancelled.is_set():
        return  # our write noticed the cancel before the waiter did
    task.result()


async def drive(
    run: Run, stream: Callable[[Driver], Awaitable[None]], prices: PriceList | None = None
) -> None:
    """Call ``stream(driver)`` under ``until_cancelled``; close what it left open. ``prices``
    price the ``Usage`` the stream reports."""
    driver = Driver(run, prices)

    async def work() -> None:
        try:
            await stream(driver)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await driver.close(exc)
            raise
        await driver.close()

    await until_cancelled(run, work())


async def pump_steers(run: Run, deliver: Callable[[str], Any]) -> None:
    """Hand each steering instruction to ``deliver`` as it arrives (run as a task; cancel it)."""
    async for text in run.steers():
        outcome = deliver(text)
        if asyncio.iscoroutine(outcome):
            await outcome
