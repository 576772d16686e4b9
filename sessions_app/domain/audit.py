"""The delivery audit's verdicts: from what the probes saw to a gap map, a design and a plan.

Pure (standard library only). The probes (``sessions_app/audit/probes.py``) talk to the
endpoint and hand this module :class:`Observations`; everything a user reads in the report is
decided here, so each verdict is unit-tested on observations written by hand
(tests/sessions_app/domain/test_audit.py).

Capabilities, after the method the project follows (docs/sessions/audit.md):

- ``delivery``: resilient delivery, the single-connection trap (cut at ~40%, come back);
- ``continuity``: continuity across surfaces (a second connection while the answer streams,
  a fresh client after it);
- ``control``: live control (a stop distinct from a disconnect);
- ``visibility``: multi-agent visibility (progress events, not only the final text).

Each finding has a :class:`Verdict`: ``green`` (works), ``amber`` (works with a flaw),
``red`` (the gap), ``unknown`` (the probe could not tell), ``n/a`` (not part of the protocol:
left out of the capability's colour).
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PROTOCOLS = ("sse", "aisdk", "agui", "openai", "ws")
CAPABILITIES = ("delivery", "continuity", "control", "visibility")
TITLES = {
    "delivery": "Resilient delivery",
    "continuity": "Continuity across surfaces",
    "control": "Live control",
    "visibility": "Multi-agent visibility",
}
# A resumed answer shorter than this share of the uninterrupted one lost text.
COMPLETE_SHARE = 0.9
# Characters per token when an endpoint does not say (OpenAI's rule of thumb for English).
CHARS_PER_TOKEN = 4


class Verdict(enum.StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"
    UNKNOWN = "unknown"
    NA = "n/a"


RANK = {Verdict.GREEN: 0, Verdict.NA: 0, Verdict.UNKNOWN: 1, Verdict.AMBER: 2, Verdict.RED: 3}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The capability's colour: its worst finding, ``n/a`` left out (all n/a: n/a)."""
    counted = [v for v in verdicts if v is not Verdict.NA]
    if not counted:
        return Verdict.NA
    return max(counted, key=lambda v: RANK[v])


@dataclass(frozen=True)
class Exchange:
    """One request the audit sent and what came back, trimmed (the evidence)."""

    request: str
    answer: str
    excerpt: str = ""
    probe: str = ""  # answer, watch, fresh, cut, resume, stop


@dataclass(frozen=True)
class Stream:
    """What one streamed answer (or an attempt at one) showed.

    ``text`` is the assistant's text as the protocol's own client would hold it after this
    stream (a replayed message under the same id replaced, a snapshot merged); ``answers`` the
    number of distinct assistant messages that text came in (two means a duplicate answer).
    """

    status: int | None = None
    error: str = ""
    content_type: str = ""
    streaming: bool = False
    events: int = 0
    text: str = ""
    answers: int = 0
    event_ids: bool = False
    first_id: str = ""
    last_id: str = ""
    repeated_ids: int = 0
    ended: bool = False
    outcome: str = ""
    progress: tuple[str, ...] = ()
    first_event_s: float | None = None
    first_text_s: float | None = None
    duration_s: float | None = None
    event_sizes: tuple[int, ...] = ()
    max_gap_s: float | None = None
    cut: bool = False
    run_id: str = ""
    message_id: str = ""

    @property
    def ok(self) -> bool:
        """An answer that streamed (2xx, an event stream, at least one event)."""
        return _success(self.status) and self.streaming

    def problem(self) -> str:
        """Why this attempt is not a streamed answer, in words; empty when it is."""
        if self.error:
            return self.error
        if self.status is None:
            return "no answer"
        if self.status in (401, 403):
            return f"HTTP {self.status}: the endpoint refused the credentials (pass --header)"
        if not _success(self.status):
            return f"HTTP {self.status}"
        if self.status == 204:
            return "HTTP 204: nothing to stream"
        if not self.streaming:
            return f"not a stream (Content-Type {self.content_type or 'missing'})"
        return ""


def _success(status: int | None) -> bool:
    """2xx, or 101 (a WebSocket opened)."""
    return status is not None and (200 <= status < 300 or status == 101)


@dataclass(frozen=True)
class Stop:
    """The explicit stop: offered, its answer, and how the stream it stopped ended."""

    offered: bool = False
    status: int | None = None
    error: str = ""
    stream: Stream | None = None
    stop_to_end_s: float | None = None


@dataclass(frozen=True)
class Observations:
    """Everything the probes saw; ``None`` for a probe not run (or not offered)."""

    url: str
    protocol: str
    baseline: Stream
    cut: Stream | None = None
    cut_at: float | None = None
    resume: Stream | None = None
    resume_offered: bool = False
    watch: Stream | None = None
    watch_offered: bool = False
    fresh: Stream | None = None
    fresh_offered: bool = False
    stop: Stop | None = None
    exchanges: tuple[Exchange, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    capability: str
    verdict: Verdict
    summary: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Capability:
    name: str
    title: str
    verdict: Verdict
    findings: tuple[Finding, ...]
    evidence: tuple[Exchange, ...] = ()


# The probes whose requests are each capability's evidence.
EVIDENCE = {
    "delivery": ("cut", "resume"),
    "continuity": ("answer", "watch", "fresh"),
    "control": ("stop",),
    "visibility": ("answer",),
}


@dataclass(frozen=True)
class Figures:
    """The stream's character, from the uninterrupted answer."""

    time_to_first_event_s: float | None
    time_to_first_token_s: float | None
    duration_s: float | None
    answer_chars: int
    answer_tokens_estimated: int
    tokens_per_second: float | None
    events: int
    events_per_second: float | None
    event_bytes_median: int | None
    event_bytes_max: int | None
    longest_gap_s: float | None
    stop_to_end_s: float | None


@dataclass(frozen=True)
class Suggestion:
    topic: str
    setting: str
    text: str


@dataclass(frozen=True)
class Step:
    title: str
    text: str
    snippet: str = ""


@dataclass(frozen=True)
class Report:
    url: str
    protocol: str
    problem: str
    capabilities: tuple[Capability, ...]
    figures: Figures | None
    design: tuple[Suggestion, ...]
    plan: tuple[Step, ...]
    exchanges: tuple[Exchange, ...]
    notes: tuple[str, ...] = field(default=())

    def gap_map(self) -> dict[str, str]:
        """Capability name -> verdict value: the line a team compares before and after."""
        return {c.name: c.verdict.value for c in self.capabilities}

    @property
    def green(self) -> bool:
        return not self.problem and all(
            c.verdict in (Verdict.GREEN, Verdict.NA) for c in self.capabilities
        )


# --- resilient delivery ---------------------------------------------------------------------


def _restarted(before: str, resumed: Stream) -> bool:
    """The way back began the answer again (its text starts where the first one did)."""
    head = before[:40]
    if not head or not resumed.text.startswith(before):
        return False
    return resumed.text[len(before) :].lstrip().startswith(head.lstrip())


def _share(text: str, baseline: Stream) -> float:
    return len(text) / max(1, len(baseline.text))


def delivery(obs: Observations) -> tuple[Finding, ...]:
    """Cut at ~40%, then the protocol's own way back: exact, duplicates, or loss."""
    cut = obs.cut
    if cut is None or not cut.text:
        return (Finding("delivery", Verdict.UNKNOWN, "the cut probe did not run"),)
    seen = f"{len(cut.text)} of ~{len(obs.baseline.text)} characters had arrived at the cut"
    if not obs.resume_offered:
        why = _no_way_back(obs)
        return (
            Finding("delivery", Verdict.RED, f"cannot resume: {why}; the rest is lost", (seen,)),
            _killed_unknown(),
        )
    resumed = obs.resume
    if resumed is None or not resumed.ok:
        problem = resumed.problem() if resumed is not None else "not tried"
        return (
            Finding(
                "delivery", Verdict.RED, f"cannot resume ({problem}): the rest is lost", (seen,)
            ),
            _killed_unknown(),
        )
    return _resumed(obs, cut, resumed, seen)


def _no_way_back(obs: Observations) -> str:
    if obs.protocol == "sse" and not obs.baseline.event_ids:
        return "the stream carries no event ids, so Last-Event-ID has nothing to name"
    if obs.protocol == "openai":
        return "OpenAI-compatible streams have no resume"
    return "the protocol offers no way back to an answer in progress"


def _killed_unknown() -> Finding:
    return Finding(
        "delivery",
        Verdict.UNKNOWN,
        "whether the cut stopped the generation on the server cannot be seen from outside",
    )


def _resumed(obs: Observations, cut: Stream, resumed: Stream, seen: str) -> tuple[Finding, ...]:
    findings: list[Finding] = []
    complete = resumed.ended and resumed.outcome in ("", "finished")
    share = _share(resumed.text, obs.baseline)
    evidence = (
        seen,
        f"after the way back the client holds {len(resumed.text)} characters"
        f" ({share:.0%} of the uninterrupted answer), in {max(1, resumed.answers)} message(s)",
    )
    extra_answers = resumed.answers > max(1, obs.baseline.answers)
    # A plain SSE client appends whatever comes: an event id it already had is a duplicate.
    # AG-UI and AI SDK clients merge by message id, so their replays are judged by the text.
    repeated = obs.protocol == "sse" and resumed.repeated_ids > 0
    if extra_answers or repeated or _restarted(cut.text, resumed):
        findings.append(
            Finding(
                "delivery",
                Verdict.AMBER,
                "restarts from the beginning: the text already shown arrives again (duplicates)",
                evidence,
            )
        )
    elif complete and share >= COMPLETE_SHARE:
        findings.append(
            Finding(
                "delivery",
                Verdict.GREEN,
                "resumes exactly: nothing lost, nothing repeated",
                evidence,
            )
        )
    else:
        findings.append(
            Finding(
                "delivery", Verdict.RED, "resumes, but the answer stays incomplete (loss)", evidence
            )
        )
    findings.append(_killed(resumed, obs.baseline, complete))
    return tuple(findings)


def _killed(resumed: Stream, baseline: Stream, complete: bool) -> Finding:
    if complete and _share(resumed.text, baseline) >= COMPLETE_SHARE:
        return Finding(
            "delivery", Verdict.GREEN, "the cut did not stop the generation: the answer went on"
        )
    return Finding(
        "delivery",
        Verdict.RED,
        "the cut killed the generation on the server: a later read shows the text stopped"
        f" at {len(resumed.text)} of ~{len(baseline.text)} characters",
    )


# --- continuity across surfaces -------------------------------------------------------------


def continuity(obs: Observations) -> tuple[Finding, ...]:
    """A second connection while the answer streams; a fresh client after it."""
    return (_watch(obs), _fresh(obs))


def _watch(obs: Observations) -> Finding:
    if not obs.watch_offered:
        return Finding(
            "continuity",
            Verdict.RED,
            "a second device sees nothing while the answer streams: the protocol has no way"
            " to join a conversation in progress",
        )
    watch = obs.watch
    if watch is None or not watch.ok:
        problem = watch.problem() if watch is not None else "not tried"
        return Finding("continuity", Verdict.RED, f"a second connection sees nothing ({problem})")
    if watch.first_text_s is not None and watch.text and not watch.ended:
        return Finding("continuity", Verdict.AMBER, "a second connection saw part of the answer")
    if watch.text and watch.events > 2 and watch.ended:
        return Finding(
            "continuity",
            Verdict.GREEN,
            "a second connection sees the answer live while it streams",
            (f"{watch.events} events, {len(watch.text)} characters, then the end",),
        )
    return Finding(
        "continuity", Verdict.AMBER, "a second connection sees only part or the final message"
    )


def _fresh(obs: Observations) -> Finding:
    if not obs.fresh_offered:
        if obs.protocol == "aisdk":
            return Finding(
                "continuity",
                Verdict.NA,
                "a fresh client's history is not part of the AI SDK stream protocol"
                " (the page loads it from the app's own store)",
            )
        return Finding(
            "continuity",
            Verdict.RED,
            "a fresh client cannot get the finished answer: the protocol has no history read",
        )
    fresh = obs.fresh
    if fresh is None or not fresh.ok:
        problem = fresh.problem() if fresh is not None else "not tried"
        return Finding("continuity", Verdict.RED, f"a fresh client gets nothing ({problem})")
    if _share(fresh.text, obs.baseline) >= COMPLETE_SHARE:
        return Finding("continuity", Verdict.GREEN, "a fresh client gets the whole message")
    return Finding(
        "continuity",
        Verdict.AMBER,
        f"a fresh client gets {len(fresh.text)} of ~{len(obs.baseline.text)} characters",
    )


# --- live control ---------------------------------------------------------------------------


# A stop request answered with one of these: the endpoint has no such request.
NO_SUCH_REQUEST = {404, 405, 501}


def control(obs: Observations, delivery_findings: Sequence[Finding]) -> tuple[Finding, ...]:
    """Is there a stop that is distinct from a disconnect, acknowledged, and quick?"""
    stop = obs.stop
    if stop is not None and stop.offered and stop.status not in NO_SUCH_REQUEST:
        return (_explicit(stop),)
    details = (f"the stop request answered HTTP {stop.status}",) if stop and stop.offered else ()
    return (_no_stop(delivery_findings, details),)


def _no_stop(delivery_findings: Sequence[Finding], details: tuple[str, ...]) -> Finding:
    """No stop request: what a stop button can do is drop the connection. Whether that ends
    the generation is what the cut showed."""
    if any("killed the generation" in f.summary for f in delivery_findings):
        summary = (
            "stop is a disconnect: closing the connection is what ends the generation,"
            " so resume and stop cannot both work (the SSE resume-cancel conflict)"
        )
    elif any("did not stop the generation" in f.summary for f in delivery_findings):
        summary = (
            "nothing stops the generation: a user's stop only closes their connection"
            " while the model goes on writing (and billing)"
        )
    else:
        summary = "no explicit stop: the only stop a client has is dropping the connection"
    return Finding("control", Verdict.RED, summary, details)


# Stop.error when the answer ended before the probe could send its stop.
STOP_TOO_LATE = "the answer ended before the stop could be sent"


def _explicit(stop: Stop) -> Finding:
    if stop.error == STOP_TOO_LATE:
        return Finding("control", Verdict.UNKNOWN, f"not probed: {STOP_TOO_LATE}")
    if stop.error or stop.status is None or not 200 <= stop.status < 300:
        answer = stop.error or f"HTTP {stop.status}"
        return Finding("control", Verdict.RED, f"the stop request was not acknowledged ({answer})")
    stream = stop.stream
    if stream is None or not stream.ended:
        return Finding(
            "control",
            Verdict.AMBER,
            "the stop was acknowledged but the stream did not end within the probe's bound",
        )
    took = (
        f" {stop.stop_to_end_s:.2f} s from stop to the stream's end" if stop.stop_to_end_s else ""
    )
    if stream.outcome in ("cancelled", "aborted"):
        return Finding(
            "control",
            Verdict.GREEN,
            "an explicit stop, distinct from a disconnect, acknowledged and seen by the stream",
            (took.strip(),) if took else (),
        )
    return Finding(
        "control",
        Verdict.AMBER,
        "the stop was acknowledged, but the stream ended without saying it was stopped",
        (took.strip(),) if took else (),
    )


# --- multi-agent visibility -----------------------------------------------------------------

CARRIES_PROGRESS = {"agui", "aisdk", "openai", "ws"}


def visibility(obs: Observations) -> tuple[Finding, ...]:
    """Progress events (steps, sub-agent runs, tool calls), or only the final text?"""
    kinds = sorted(set(obs.baseline.progress))
    if kinds:
        return (
            Finding(
                "visibility",
                Verdict.GREEN,
                "the answer exposes its progress: " + ", ".join(kinds[:12]),
            ),
        )
    if obs.protocol in CARRIES_PROGRESS:
        return (
            Finding(
                "visibility",
                Verdict.AMBER,
                "only the final text in this answer; the protocol can carry steps and tool"
                " calls (try a --prompt that makes the agent use tools or sub-agents)",
            ),
        )
    return (
        Finding(
            "visibility",
            Verdict.RED,
            "only the final text: steps, tool calls and sub-agents are invisible to the user",
        ),
    )


# --- stream character and the session-layer design ------------------------------------------


def figures(obs: Observations) -> Figures:
    """The measured stream, from the uninterrupted answer."""
    base = obs.baseline
    chars = len(base.text)
    tokens = -(-chars // CHARS_PER_TOKEN)
    streaming_s = None
    if base.duration_s is not None and base.first_text_s is not None:
        streaming_s = base.duration_s - base.first_text_s
    sizes = list(base.event_sizes)
    return Figures(
        time_to_first_event_s=_round(base.first_event_s),
        time_to_first_token_s=_round(base.first_text_s),
        duration_s=_round(base.duration_s),
        answer_chars=chars,
        answer_tokens_estimated=tokens,
        tokens_per_second=_round(tokens / streaming_s) if streaming_s and streaming_s > 0 else None,
        events=base.events,
        events_per_second=(
            _round(base.events / base.duration_s)
            if base.duration_s and base.duration_s > 0
            else None
        ),
        event_bytes_median=int(statistics.median(sizes)) if sizes else None,
        event_bytes_max=max(sizes) if sizes else None,
        longest_gap_s=_round(base.max_gap_s),
        stop_to_end_s=_round(obs.stop.stop_to_end_s)
        if obs.stop and _acknowledged(obs.stop)
        else None,
    )


def _acknowledged(stop: Stop | None) -> bool:
    return stop is not None and stop.status is not None and 200 <= stop.status < 300


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def design(fig: Figures) -> tuple[Suggestion, ...]:
    """Retention, snapshot, limits and coalescing suited to the measured stream."""
    out = [_coalescing(fig), _limits(fig), _snapshot(fig), _retention(fig)]
    if fig.longest_gap_s is not None and fig.longest_gap_s > 10:
        out.append(
            Suggestion(
                "keep-alive",
                "DOORS_KEEPALIVE_SECONDS, AGENT_HEARTBEAT_TIMEOUT",
                f"the stream went quiet for {fig.longest_gap_s:.1f} s: keep-alives every"
                " 10 s keep proxies from closing it, and AGENT_HEARTBEAT_TIMEOUT"
                f" should stay above {2 * fig.longest_gap_s:.0f} s",
            )
        )
    if fig.time_to_first_token_s is not None and fig.time_to_first_token_s > 20:
        out.append(
            Suggestion(
                "start",
                "DOORS_RUN_START_TIMEOUT",
                f"the first token took {fig.time_to_first_token_s:.1f} s: raise"
                " DOORS_RUN_START_TIMEOUT above it (default 30 s)",
            )
        )
    if fig.stop_to_end_s is not None:
        out.append(
            Suggestion(
                "cancel",
                "CANCEL_ACK_TIMEOUT",
                f"the stop took {fig.stop_to_end_s:.2f} s to end the stream; CANCEL_ACK_TIMEOUT"
                " (10 s) bounds how long an agent may take to acknowledge",
            )
        )
    return tuple(out)


def _coalescing(fig: Figures) -> Suggestion:
    rate = fig.events_per_second
    if rate is not None and rate > 30:
        text = (
            f"{rate:.0f} events/s: coalesce text deltas over 30 ms before appending"
            " (the SDK's default, SessionsClient(coalesce_seconds=0.03)): at most ~33 appends/s"
            " per answer, each carrying a few tokens"
        )
    else:
        shown = f"{rate:.0f} events/s" if rate is not None else "an unmeasured rate"
        text = (
            f"{shown}: the SDK's 30 ms coalescing window changes little; keep the default"
            " (SessionsClient(coalesce_seconds=0.03))"
        )
    return Suggestion("coalescing", "SessionsClient(coalesce_seconds=...)", text)


def _limits(fig: Figures) -> Suggestion:
    biggest = fig.event_bytes_max or 0
    default = 64 * 1024
    if biggest * 4 > default:
        want = 1 << (biggest * 4 - 1).bit_length()
        text = (
            f"the largest event was {biggest} bytes: raise MAX_EVENT_BYTES to {want} (4x"
            " headroom; the default 65536 would refuse events this size)"
        )
    else:
        text = (
            f"the largest event was {biggest} bytes: the default MAX_EVENT_BYTES (65536) leaves"
            " ample headroom; the SDK splits longer text over several events"
        )
    return Suggestion("limits", "MAX_EVENT_BYTES", text)


def _snapshot(fig: Figures) -> Suggestion:
    per_answer = max(1, fig.events)
    return Suggestion(
        "snapshot",
        "prune_sessions, snapshots",
        f"one answer is ~{per_answer} events: a conversation of 50 answers is ~{50 * per_answer}"
        " entries, which a late joiner receives folded (the snapshot: messages with their full"
        " text and the offset to continue from) in one round trip instead of replaying them",
    )


def _retention(fig: Figures) -> Suggestion:
    return Suggestion(
        "retention",
        "RETENTION_DAYS",
        "keep entries long enough for a device to come back (days, not the"
        f" {fig.duration_s or 0:.0f} s an answer takes): RETENTION_DAYS = 30, then run"
        " `python manage.py prune_sessions` daily; older entries fold into the snapshot",
    )


# --- the migration plan ---------------------------------------------------------------------

SNIPPETS = {
    "aisdk": (
        "Point the AI SDK transport at the AI SDK door",
        'import { DefaultChatTransport } from "ai";\n'
        "const transport = new DefaultChatTransport({\n"
        '  api: "/sessions/aisdk/chat",\n'
        "  headers: { Authorization: `Bearer ${token}` },\n"
        "});\n"
        "const chat = useChat({ id: sessionName, transport, resume: true });\n"
        "// stop the agent itself (stop() only closes this tab's stream):\n"
        'await fetch(`/sessions/aisdk/chat/${sessionName}/stop`, { method: "POST", headers });',
    ),
    "agui": (
        "Point the AG-UI agent at the AG-UI door",
        'import { SessionsHttpAgent } from "sessions_app/agui-connect.js";\n'
        "const agent = new SessionsHttpAgent({\n"
        '  url: "/sessions/agui/",\n'
        "  threadId: sessionName,\n"
        "  headers: { Authorization: `Bearer ${token}` },\n"
        "});\n"
        "await agent.runAgent();\n"
        "await agent.connectAgent();   // after a drop: continues where the stream stopped\n"
        "await agent.cancel();         // the explicit stop",
    ),
    "browser": (
        "Use the browser client over the WebSocket door",
        'import { SessionsClient } from "/static/sessions_app/durable-sessions.js";\n'
        'const client = new SessionsClient({ label: "laptop" });\n'
        "const chat = client.subscribe(sessionName);\n"
        'chat.addEventListener("change", () => render(chat.state));\n'
        "await chat.sendMessage(text);\n"
        "await chat.cancel();          // the explicit stop",
    ),
}
DOOR_FOR = {
    "aisdk": "aisdk",
    "agui": "agui",
    "sse": "browser",
    "openai": "browser",
    "ws": "browser",
}


def plan(obs: Observations, capabilities: Sequence[Capability]) -> tuple[Step, ...]:
    """The concrete steps in this project, from the endpoint's protocol and its gaps."""
    steps = [
        Step(
            "Install and mount sessions_app",
            "Add sessions_app (and channels) to INSTALLED_APPS, mount its URLs and doors:"
            ' path("sessions/", include("sessions_app.doors.urls")); one session per'
            " conversation (its name is the chat or thread id). docs/sessions/index.md",
        ),
        _attach(obs),
    ]
    title, snippet = SNIPPETS[DOOR_FOR.get(obs.protocol, "browser")]
    steps.append(Step(title, _door_text(obs.protocol), snippet))
    if any(c.name == "control" and c.verdict is not Verdict.GREEN for c in capabilities):
        steps.append(
            Step(
                "Wire the stop button to the explicit stop",
                "Closing a connection no longer stops anything: the stop button sends the"
                " door's cancel (above), the agent acknowledges it and the run ends cancelled"
                " on every device.",
            )
        )
    steps.append(
        Step(
            "Audit again",
            "python manage.py sessions audit"
            f" {_door_url(obs.protocol)} --protocol {_door_protocol(obs.protocol)}"
            " --header 'Authorization: Bearer dsk_...' --thread <a session name>"
            " --save: every row of the gap map should read green (the admin shows the"
            " previous run's verdicts beside).",
        )
    )
    return tuple(steps)


def _attach(obs: Observations) -> Step:
    if obs.protocol in ("agui", "aisdk", "openai"):
        return Step(
            "Keep your agent server; put the gateway in front of it",
            "The gateway worker calls your existing endpoint for each turn and writes its"
            " stream into the session log, so no client connection holds the upstream"
            " request, and a cancel aborts it. docs/sessions/agents.md",
            "SESSIONS_APP = {\n"
            '    "AGENT_GATEWAYS": {\n'
            f'        "assistant": {{"protocol": "{obs.protocol}", "url": "{_py(obs.url)}"}},\n'
            "    },\n"
            "}\n"
            "# then run the worker beside the site:\n"
            "# python manage.py run_agents",
        )
    return Step(
        "Attach the agent to the session log",
        "Write the agent's answer into the session instead of into the HTTP response: with the"
        " Python agent SDK (docs/sessions/sdk.md), or a framework adapter"
        " (sessions_app.agents.adapters.pydantic_ai | langgraph | openai_agents) if the agent"
        " is built on one of those.",
        "from sessions_app.client import SessionsClient\n"
        'async with SessionsClient(base_url, api_key="dsk_...") as client:\n'
        "    session = await client.session(session_name)\n"
        '    async with session.run(agent="assistant") as run:\n'
        "        async for token in your_model(prompt):\n"
        "            await run.text(token)   # coalesced; stops on a user's cancel",
    )


def _py(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _door_text(protocol: str) -> str:
    if protocol == "aisdk":
        return (
            "The frontend keeps useChat: the door appends the user's message to the session"
            " and streams the agent's run from the log; resume: true rejoins a run in"
            " progress after a reload. docs/sessions/aisdk.md"
        )
    if protocol == "agui":
        return (
            "The frontend keeps its AG-UI client; our subclass adds connect() (continue after"
            " Last-Event-ID) and cancel(). docs/sessions/agui.md"
        )
    return (
        "A plain SSE or OpenAI-style stream has no resume, no second device and no stop: the"
        " browser client resumes from its last offset, follows every device, and cancels"
        " explicitly. docs/sessions/browser-client.md"
    )


def _door_protocol(protocol: str) -> str:
    """The door to audit after the move: the one the frontend moves to."""
    return protocol if protocol in ("aisdk", "agui") else "ws"


def _door_url(protocol: str) -> str:
    paths = {
        "aisdk": "https://<your site>/sessions/aisdk/chat",
        "agui": "https://<your site>/sessions/agui/",
    }
    return paths.get(protocol, "wss://<your site>/ws/sessions/")


# --- the report -----------------------------------------------------------------------------


def report(obs: Observations) -> Report:
    """The gap map, the design and the plan for what the probes saw."""
    problem = obs.baseline.problem() if not obs.baseline.ok else ""
    if not problem and not obs.baseline.text:
        problem = obs.baseline.error or "the stream carried no text this audit could read"
    if problem:
        return _blocked(obs, problem)
    delivered = delivery(obs)
    groups = {
        "delivery": delivered,
        "continuity": continuity(obs),
        "control": control(obs, delivered),
        "visibility": visibility(obs),
    }
    capabilities = tuple(
        Capability(
            name,
            TITLES[name],
            worst(f.verdict for f in groups[name]),
            groups[name],
            tuple(x for x in obs.exchanges if x.probe in EVIDENCE[name]),
        )
        for name in CAPABILITIES
    )
    fig = figures(obs)
    return Report(
        url=obs.url,
        protocol=obs.protocol,
        problem="",
        capabilities=capabilities,
        figures=fig,
        design=design(fig),
        plan=plan(obs, capabilities),
        exchanges=obs.exchanges,
        notes=obs.notes,
    )


def _blocked(obs: Observations, problem: str) -> Report:
    """No answer to probe: every capability unknown, the reason up front."""
    finding = "not probed: the endpoint gave no streamed answer"
    capabilities = tuple(
        Capability(name, TITLES[name], Verdict.UNKNOWN, (Finding(name, Verdict.UNKNOWN, finding),))
        for name in CAPABILITIES
    )
    return Report(
        url=obs.url,
        protocol=obs.protocol,
        problem=problem,
        capabilities=capabilities,
        figures=None,
        design=(),
        plan=(),
        exchanges=obs.exchanges,
        notes=obs.notes,
    )


def blocked(url: str, protocol: str, problem: str) -> Report:
    """A report for input the audit refuses before sending anything (an unknown protocol)."""
    return _blocked(
        Observations(url=url, protocol=protocol, baseline=Stream(error=problem)), problem
    )


def compare(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str, str]]:
    """(capability, before, after) for each capability whose verdict changed."""
    return [
        (name, before.get(name, ""), after.get(name, ""))
        for name in CAPABILITIES
        if before.get(name) != after.get(name)
    ]
