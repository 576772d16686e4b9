"""Answer turns with a compiled LangGraph graph (the ``langgraph`` extra).

    from sessions_app.agents import agent
    from sessions_app.agents.adapters.langgraph import handler

    agent("assistant")(handler(graph))   # graph = StateGraph(MessagesState)...compile()

The graph runs with ``graph.astream(..., stream_mode=["messages", "tasks", "values",
"custom"], subgraphs=True)``: the messages stream gives text, reasoning and tool calls (their
argument chunks and the ``ToolMessage`` result), each task a step, each state of the graph
(without its ``messages``) a state snapshot, each custom write a ``CUSTOM`` event, and each
subgraph its own child run. The input is ``{"messages": turn.messages}`` unless ``input``
says otherwise. A cancel cancels the task that runs the graph: its stream is closed and no
further node runs. LangGraph has no way to add to a running graph's state from outside (short
of an interrupt and a checkpointer), so steers are not applied by themselves: a model node
that wants them calls ``take_steers()`` before its model call. Each AI message's
``usage_metadata`` (summed over its chunks, as LangChain adds them) is reported with the
model's name (``response_metadata["model_name"]``, else the stream's ``ls_model_name``) in
the run the message streamed in, when the message ends. Importable without Django.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sessions_app.agents.adapters.actions import (
    Action,
    Custom,
    Driver,
    Enter,
    Leave,
    PriceList,
    Reasoning,
    ReasoningEnd,
    State,
    Step,
    Text,
    TextEnd,
    ToolArgs,
    ToolEnd,
    ToolResult,
    ToolStart,
    Usage,
    as_text,
    drive,
    jsonable,
    require,
    token_count,
)

if TYPE_CHECKING:
    from sessions_app.agents.base import Handler, Turn
    from sessions_app.client import Run

EXTRA = "langgraph"
STREAM_MODES = ["messages", "tasks", "values", "custom"]
_current: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "sessions_app_langgraph_run", default=None
)


def _require() -> None:
    require("langgraph", "LangGraph", "langgraph", EXTRA)


def take_steers() -> list[dict[str, str]]:
    """The steering instructions users sent since the last call, as user messages to add to
    a model call (``[]`` outside a turn). Call it from a node, before the model call."""
    run = _current.get()
    steers = []
    while run is not None and (text := run.next_steer()) is not None:
        steers.append({"role": "user", "content": text})
    return steers


class ChunkMapping:
    """``(namespace, mode, chunk)`` items of a LangGraph stream -> actions. Pure.

    Remembers the message being streamed, the tool calls started (a chunk of arguments names
    its call by index only), the subgraphs open as child runs and the last state sent.
    """

    def __init__(self) -> None:
        self.children: dict[str, tuple[str, str]] = {}  # key -> (parent key, node name)
        self.message: dict[str, str | None] = {}  # key -> id of the message being streamed
        self.calls: dict[tuple[str, str | None, int | None], str] = {}
        self.open_calls: dict[str, str] = {}  # call id -> key
        self.states: dict[str, Any] = {}
        self.usage: dict[str, Usage] = {}  # key -> the usage of the message being streamed

    def actions(self, item: Any) -> list[Action]:
        namespace, mode, chunk = item
        key, out = self._scope(tuple(namespace))
        if mode == "messages":
            message, metadata = chunk
            out += self._message(key, message, metadata)
        elif mode == "tasks":
            out += self._task(key, chunk)
        elif mode == "values":
            out += self._state(key, chunk)
        elif mode == "custom":
            out.append(_custom(key, chunk))
        return out

    def _scope(self, namespace: tuple[str, ...]) -> tuple[str, list[Action]]:
        """The key of the run for ``namespace``, opening the child runs it needs."""
        out: list[Action] = []
        parent = ""
        for depth in range(len(namespace)):
            key = "/".join(namespace[: depth + 1])
            if key not in self.children:
                node = namespace[depth].split(":", 1)[0]
                self.children[key] = (parent, node)
                out.append(Enter(key, node, parent))
            parent = key
        return parent, out

    def _message(self, key: str, message: Any, metadata: Any = None) -> list[Action]:
        kind = getattr(message, "type", None)
        if kind == "tool":
            return self._tool_message(key, message)
        if kind not in ("ai", "AIMessageChunk"):
            return []
        out: list[Action] = []
        mid = getattr(message, "id", None)
        if self.message.get(key) != mid:
            out += self._end_message(key)
            self.message[key] = mid
        self._count(key, message, metadata)
        out += self._content(key, message)
        chunks = getattr(message, "tool_call_chunks", None)
        if kind == "AIMessageChunk" or chunks:
            for chunk in chunks or []:
                out += self._call_chunk(key, mid, chunk)
        else:  # a whole message (a node's output that was not streamed)
            for call in getattr(message, "tool_calls", None) or []:
                call_id = str(call.get("id") or f"{mid}-{len(self.calls)}")
                self.calls[(key, mid, len(self.calls))] = call_id
                self.open_calls[call_id] = key
                out += [ToolStart(call_id, str(call.get("name", "")), key),
                        ToolArgs(call_id, as_text(call.get("args", {})), key)]  # fmt: skip
        if getattr(message, "chunk_position", None) == "last" or kind == "ai":
            out += self._end_message(key)
        return out

    def _content(self, key: str, message: Any) -> list[Action]:
        out: list[Action] = []
        reasoning = (getattr(message, "additional_kwargs", None) or {}).get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            out.append(Reasoning(reasoning, key))
        content = getattr(message, "content", "")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks or []:
            if isinstance(block, str):
                block = {"type": "text", "text": block}
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and block.get("text"):
                out.append(Text(str(block["text"]), key))
            elif block.get("type") in ("reasoning", "thinking"):
                text = block.get("reasoning") or block.get("thinking")
                if isinstance(text, str) and text:
                    out.append(Reasoning(text, key))
        return out

    def _call_chunk(self, key: str, mid: str | None, chunk: Any) -> list[Action]:
        index = chunk.get("index")
        call_id = self.calls.get((key, mid, index))
        out: list[Action] = []
        if call_id is None:
            if not chunk.get("id") and not chunk.get("name"):
                return []
            call_id = str(chunk.get("id") or f"{mid}-{index}")
            self.calls[(key, mid, index)] = call_id
            self.open_calls[call_id] = key
            out.append(ToolStart(call_id, str(chunk.get("name") or ""), key))
        if chunk.get("args"):
            out.append(ToolArgs(call_id, str(chunk["args"]), key))
        return out

    def _count(self, key: str, message: Any, metadata: Any) -> None:
        """Add a message chunk's tokens to its message's usage (chunks carry parts of it)."""
        counted = getattr(message, "usage_metadata", None)
        if not isinstance(counted, dict):
            return
        named = (getattr(message, "response_metadata", None) or {}).get("model_name")
        if not isinstance(named, str) or not named:
            named = metadata.get("ls_model_name") if isinstance(metadata, dict) else None
        seen = self.usage.get(key, Usage(key=key))
        given = _add(seen.input_tokens, counted.get("input_tokens"))
        taken = _add(seen.output_tokens, counted.get("output_tokens"))
        model = named if isinstance(named, str) and named else seen.model
        self.usage[key] = Usage(model, given, taken, key)

    def finish(self) -> list[Action]:
        """The usage of messages the stream left open (their end never came)."""
        return [self.usage.pop(key) for key in list(self.usage)]

    def _end_message(self, key: str) -> list[Action]:
        mid = self.message.pop(key, None)
        out: list[Action] = [ReasoningEnd(key), TextEnd(key)] if mid is not None else []
        if key in self.usage:
            out.append(self.usage.pop(key))
        for (owner, message, _index), call_id in list(self.calls.items()):
            if owner == key and message == mid and call_id in self.open_calls:
                del self.open_calls[call_id]
                out.append(ToolEnd(call_id, key))
        return out

    def _tool_message(self, key: str, message: Any) -> list[Action]:
        call_id = str(getattr(message, "tool_call_id", ""))
        out: list[Action] = self._end_message(key)
        if call_id in self.open_calls:
            out.append(ToolEnd(call_id, self.open_calls.pop(call_id)))
        content = getattr(message, "content", "")
        return [*out, ToolResult(call_id, as_text(jsonable(content)), key)]

    def _task(self, key: str, task: Any) -> list[Action]:
        if not isinstance(task, dict) or not isinstance(task.get("name"), str):
            return []
        name = task["name"]
        if "result" not in task and "error" not in task:
            return [Step(name, False, key)]
        out: list[Action] = [Step(name, True, key)]
        for child, (parent, node) in list(self.children.items()):
            if parent == key and node == name:  # the subgraph of this node is done
                out += self._leave(child)
        return out

    def _leave(self, key: str) -> list[Action]:
        out: list[Action] = []
        for child, (parent, _node) in list(self.children.items()):
            if parent == key:
                out += self._leave(child)
        del self.children[key]
        self.message.pop(key, None)
        counted = [self.usage.pop(key)] if key in self.usage else []
        return [*out, *counted, Leave(key)]

    def _state(self, key: str, values: Any) -> list[Action]:
        if not isinstance(values, dict):
            return []
        state = jsonable({k: v for k, v in values.items() if k != "messages"})
        if not state or self.states.get(key) == state:
            return []
        self.states[key] = state
        return [State(state, key)]


def _add(total: int | None, count: Any) -> int | None:
    """``total`` plus a chunk's token ``count`` (None while no valid count was seen)."""
    count = token_count(count)
    if count is None:
        return total
    return count if total is None else total + count


def _custom(key: str, chunk: Any) -> Custom:
    if isinstance(chunk, dict) and isinstance(chunk.get("name"), str) and "value" in chunk:
        return Custom(chunk["name"], jsonable(chunk["value"]), key)
    return Custom("langgraph", jsonable(chunk), key)


def handler(
    graph: Any,
    *,
    input: Callable[[Turn], Any] | None = None,
    config: Callable[[Turn], dict[str, Any]] | None = None,
    prices: PriceList | None = None,
) -> Handler:
    """A turn handler that answers with ``graph`` (a compiled LangGraph graph).

    ``input(turn)`` gives the graph's input (default ``{"messages": turn.messages}``) and
    ``config(turn)`` its run config (e.g. a ``thread_id`` for a checkpointer). ``prices``
    (``Prices``, or one per model name) turn the reported tokens into a cost.
    """
    _require()

    async def answer(turn: Turn, run: Run) -> None:
        given = input(turn) if input is not None else {"messages": list(turn.messages)}
        options = config(turn) if config is not None else None

        async def stream(driver: Driver) -> None:
            token = _current.set(run)
            mapping = ChunkMapping()
            try:
                async for item in graph.astream(
                    given, options, stream_mode=STREAM_MODES, subgraphs=True
                ):
                    await driver.apply(mapping.actions(item))
                await driver.apply(mapping.finish())
            finally:
                _current.reset(token)

        await drive(run, stream, prices)

    return answer
