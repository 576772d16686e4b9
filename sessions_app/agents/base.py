"""What an agent handler is given and how it is registered. Importable without Django.

A *turn* is a user message that asks for an answer. A worker claims it, opens a run in the
turn's session (its ``RUN_STARTED`` names the turn) and calls the handler registered for the
turn's agent name::

    from sessions_app.agents import agent

    @agent("assistant")
    async def answer(turn, run):
        async for token in my_model(turn.messages):
            await run.text(token)

``run`` is the SDK's ``Run`` (sessions_app/client): ``text``, ``tool_call``, ``state``,
``custom``, ``cancelled``, ``next_steer``, and ``run.session.run(agent=..., parent=run)`` for a
sub-agent's own run. The worker ends the run when the handler returns (``RUN_FINISHED``), when
it raises (``RUN_ERROR``) or when a user cancels it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessions_app.client import Run


@dataclass(frozen=True)
class Turn:
    """One claimed turn, as its handler sees it.

    id        the turn's id (stable across attempts)
    session   the session's name
    message   the id of the user message that asked for the answer
    text      that message's text
    agent     the agent name the turn is for
    attempt   1 for the first claim; a turn re-offered after its worker was lost counts up
    run_id    the run this attempt answers in (its RUN_STARTED names the turn)
    messages  the conversation so far, oldest first, ending with the user message:
              ``[{"role": "user" | "assistant", "content": "..."}]``, bounded in size
    input     what the client sent with the message beyond its text (the AG-UI door's
              ``tools``, ``context``, ``state`` and ``forwardedProps``); empty otherwise
    message_offset  the offset of the message: the worker follows the session from there,
              so a cancel or a steer sent meanwhile reaches the run
    """

    id: int
    session: str
    message: str
    text: str
    agent: str
    attempt: int
    run_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    input: dict[str, Any] = field(default_factory=dict)
    message_offset: str = "-1"


Handler = Callable[["Turn", "Run"], Awaitable[None]]


class Registry:
    """Handlers by agent name. A worker serves the names registered in the modules it loads."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def agent(self, name: str) -> Callable[[Handler], Handler]:
        """Register ``async def answer(turn, run)`` for turns addressed to ``name``."""
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise ValueError("an agent name is a non-empty string of at most 128 characters")

        def register(handler: Handler) -> Handler:
            if name in self.handlers and self.handlers[name] is not handler:
                raise ValueError(f"agent {name!r} is registered twice")
            self.handlers[name] = handler
            return handler

        return register


registry = Registry()
agent = registry.agent
