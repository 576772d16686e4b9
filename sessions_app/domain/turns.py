"""Turns: a user message that asks for an answer, as a durable work item. Pure rules.

A turn is created in the same transaction as its message. Agent workers claim turns as
competing consumers; a claim holds a lease that the worker's heartbeat renews. A turn's
lifecycle::

    queued --claim--> claimed --run finished or cancelled--> done
                         |  \\--run failed (the handler raised)--> failed
                         \\--lease expired or agent lost--> queued again (attempt + 1)
                                                     or failed (no attempts left)
    queued --superseded by an interrupting message--> abandoned

Each attempt answers in its own run, ``turn-<id>-<attempt>``, whose RUN_STARTED names the
turn. A claim after a lost lease ends the previous attempt's run (``agent_lost``) before the
new attempt starts, so the lost worker's later appends to its run are refused: one turn gets
one answer.

While a turn of a session is open (queued or claimed), a new user message follows the
session's ``on_busy`` policy (the double-texting strategies of LangGraph's server):

queue      the message gets its own turn, answered after the open one (the default)
steer      the message steers the running turn's run (a STEER event); no new turn
interrupt  the running turn's run is cancelled; the message gets a new turn
reject     the message is refused (409 ``busy``): nothing is written
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sessions_app.domain.errors import BadRequest, Conflict

# The most turns one claim takes (the claim frame's and the REST body's ``limit``). A worker
# that serves more at once claims again as turns end.
CLAIM_MOST: Final = 50


class TurnState(enum.StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"
    ABANDONED = "abandoned"

    @property
    def is_open(self) -> bool:
        return self in OPEN


OPEN: Final = frozenset({TurnState.QUEUED, TurnState.CLAIMED})
ON_BUSY: Final = ("queue", "steer", "interrupt", "reject")
AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MENTION = re.compile(r"@([A-Za-z0-9][A-Za-z0-9_.-]{0,127})\b")
LOST: Final = "agent_lost"


class Busy(Conflict):
    """A message arrived while the session's turn is open, and the session rejects those."""

    code = "busy"


class TurnFenced(Conflict):
    """A run names a turn whose current attempt is another one (its worker lost the claim)."""

    code = "turn_fenced"


def run_id(turn: int, attempt: int) -> str:
    """The run an attempt answers in."""
    return f"turn-{turn}-{attempt}"


@dataclass(frozen=True)
class Policy:
    """How a session's user messages become turns (``Session.metadata["turns"]``).

    agent    the agent that answers; None: messages in this session ask for no answer
    agents   names a message may address with a leading ``@name`` (empty: mentions are text)
    on_busy  what a message does while a turn is open (see the module docstring)
    """

    agent: str | None = "assistant"
    agents: frozenset[str] = frozenset()
    on_busy: str = "queue"

    @classmethod
    def parse(cls, raw: object, default: Policy) -> Policy:
        """A session's policy from its metadata, over the site's default; BadRequest if bad."""
        if raw is None:
            return default
        if not isinstance(raw, Mapping):
            raise BadRequest("metadata.turns must be an object")
        unknown = set(raw) - {"agent", "agents", "on_busy"}
        if unknown:
            raise BadRequest(f"metadata.turns has unknown keys: {sorted(unknown)}")
        agent = raw.get("agent", default.agent)
        if agent is not None and not _is_name(agent):
            raise BadRequest("metadata.turns.agent must be an agent name or null (no answer)")
        agents = raw.get("agents", sorted(default.agents))
        if not isinstance(agents, list) or not all(_is_name(a) for a in agents):
            raise BadRequest("metadata.turns.agents must be a list of agent names")
        on_busy = raw.get("on_busy", default.on_busy)
        if on_busy not in ON_BUSY:
            raise BadRequest(f"metadata.turns.on_busy must be one of {list(ON_BUSY)}")
        return cls(agent, frozenset(agents), on_busy)

    def route(self, text: str) -> str | None:
        """The agent a message is for: a leading ``@name`` of ``agents``, else ``agent``."""
        found = MENTION.match(text.lstrip())
        if found and found.group(1) in self.agents:
            return found.group(1)
        return self.agent


def _is_name(value: object) -> bool:
    return isinstance(value, str) and AGENT_NAME.fullmatch(value) is not None


@dataclass(frozen=True)
class OpenTurn:
    """The session's open turn a new message meets: its state, and its run if one started."""

    id: int
    state: TurnState
    run: str | None  # the current attempt's run when it is running


@dataclass(frozen=True)
class Decision:
    """What a new user message does: make a turn, and perhaps steer or cancel a run first."""

    create: bool
    steer_run: str | None = None
    cancel_run: str | None = None
    abandon: int | None = None  # a queued turn the new message supersedes


def on_message(policy: Policy, busy: OpenTurn | None) -> Decision:
    """What a new user message does, given the session's newest open turn (None: idle)."""
    if busy is None or policy.on_busy == "queue":
        return Decision(create=True)
    if policy.on_busy == "reject":
        raise Busy("the agent is still answering; wait for it or cancel it", turn=busy.id)
    if policy.on_busy == "steer":
        if busy.run is not None:
            return Decision(create=False, steer_run=busy.run)
        # Not started yet: its answer will read the conversation, this message included.
        return Decision(create=False)
    # interrupt
    if busy.run is not None:
        return Decision(create=True, cancel_run=busy.run)
    if busy.state is TurnState.QUEUED:
        return Decision(create=True, abandon=busy.id)
    return Decision(create=True)


def after_run(outcome: str, code: str | None, attempts: int, max_attempts: int) -> TurnState:
    """A turn's state once the run of its current attempt has ended.

    ``outcome`` is the run's final status (finished, cancelled, failed). A run ended because
    its agent was lost is tried again while attempts remain.
    """
    if outcome == "failed" and code == LOST:
        return TurnState.QUEUED if attempts < max_attempts else TurnState.FAILED
    if outcome == "failed":
        return TurnState.FAILED
    return TurnState.DONE


def conversation(messages: Sequence[Mapping[str, Any]], max_chars: int) -> list[dict[str, Any]]:
    """The newest messages whose text fits in ``max_chars`` (the last one always kept)."""
    kept: list[dict[str, Any]] = []
    size = 0
    for message in reversed(messages):
        content = str(message.get("content") or "")
        if kept and size + len(content) > max_chars:
            break
        size += len(content)
        kept.append({"role": message.get("role", "user"), "content": content[-max_chars:]})
    kept.reverse()
    return kept
