"""Settings of sessions_app, read lazily from ``settings.SESSIONS_APP``.

Every key, its default and its meaning is listed in docs/sessions/configuration.md.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Largest WebSocket frame or REST body accepted, in bytes.
    "MAX_FRAME_BYTES": 256 * 1024,
    # Largest single event (its JSON encoding), in bytes.
    "MAX_EVENT_BYTES": 64 * 1024,
    # Largest session metadata (its JSON), in bytes: every list of sessions carries it.
    "MAX_METADATA_BYTES": 64 * 1024,
    # Events in one publish.
    "MAX_EVENTS_PER_PUBLISH": 500,
    # Sessions one WebSocket may subscribe to at once.
    "MAX_SUBSCRIPTIONS_PER_CONNECTION": 100,
    # Frames a client may send per second (token bucket with this rate and burst).
    "MAX_FRAMES_PER_SECOND": 50,
    "FRAME_BURST": 100,
    # Entries read from the database per replay batch.
    "REPLAY_BATCH": 2500,
    # Default retention of a session's entries, in days; None keeps them forever.
    "RETENTION_DAYS": None,
    # Allowed WebSocket origins; None means settings.ALLOWED_HOSTS decides.
    "ALLOWED_ORIGINS": None,
    # Group commit: how long the writer waits for more appends, in seconds, and the
    # most entries one transaction carries.
    "GROUP_COMMIT_WINDOW": 0.002,
    "GROUP_COMMIT_MAX_ENTRIES": 2000,
    # Lifetime of the signed tokens browsers connect with (?token=...), in seconds.
    "TOKEN_MAX_AGE": 300,
    # Open connections (WebSockets, SSE, long-polls) ask again at least this often whether
    # their key, user and memberships still let them in (a change also tells them at once).
    "ACCESS_RECHECK_SECONDS": 30.0,
    # Presence entries expire after this many seconds without a heartbeat.
    "PRESENCE_TTL": 60,
    # Presence frames to one socket about one session: at most one per this many seconds
    # (longer in sessions of many devices); the first change after a quiet window goes out at
    # once, later ones together at the window's end. 0: a frame per change.
    "PRESENCE_COALESCE": 0.25,
    # A run whose agent has not acknowledged a cancel within this many seconds is marked
    # cancelled (reason: timeout) and refuses further appends.
    "CANCEL_ACK_TIMEOUT": 10,
    # Prometheus metrics at /metrics (sessions_app.ops): on or off. Closed unless a bearer
    # token or an allow-list of client addresses (IPs or networks, e.g. "10.0.0.0/8") opens it.
    "METRICS_ENABLED": True,
    "METRICS_TOKEN": None,
    "METRICS_ALLOWED_IPS": None,
    # Seconds a REST long-poll for new entries waits at most.
    "REST_LONG_POLL_MAX": 30,
    # Past this many bytes waiting for a client, the server sends nothing more to it until it
    # reads; a client that reads nothing for SLOW_CONSUMER_TIMEOUT seconds meanwhile is closed
    # with code 4008 and resumes from its offset when it reads again.
    "MAX_BUFFERED_BYTES": 8 * 1024 * 1024,
    "SLOW_CONSUMER_TIMEOUT": 10.0,
    # An `events` frame holds about this many bytes of events at most (one event may exceed it).
    "MAX_EVENTS_FRAME_BYTES": 512 * 1024,
    # A running run with no append and no heartbeat for this many seconds is ended with
    # RUN_ERROR code "agent_lost". None: never.
    "AGENT_HEARTBEAT_TIMEOUT": 60,
    # Sessions one user may own (deleted ones do not count); None: no limit.
    "MAX_SESSIONS_PER_USER": 10000,
    # Session names starting with one of these prefixes are kept for the site's own code (the
    # demo site's job bridge uses "mlexec-job-"): no door lets a user or key create one.
    "RESERVED_NAME_PREFIXES": (),
    # --- Turns (docs/sessions/agents.md) ---
    # How a session's user messages become turns unless its metadata.turns says otherwise:
    # the agent that answers (None: no answer is asked), the names a leading @name may
    # address, and what a message does while a turn is open (queue, steer, interrupt, reject).
    "TURNS": {"agent": "assistant", "agents": [], "on_busy": "queue"},
    # A worker's claim on a turn lasts this long unless its heartbeat renews it; a turn whose
    # lease ran out is offered again, up to TURN_MAX_ATTEMPTS claims, then failed.
    "TURN_LEASE_SECONDS": 30.0,
    "TURN_MAX_ATTEMPTS": 3,
    # The conversation a handler is given holds at most this many characters (newest first).
    "TURN_CONTEXT_CHARS": 32000,
    # Seconds a worker's claim request waits at most for a turn (a long-poll).
    "TURN_CLAIM_WAIT_MAX": 30,
    # Frames a second a worker key's WebSocket may send (the runs of all the turns it answers
    # share it; other sockets have MAX_FRAMES_PER_SECOND).
    "WORKER_FRAMES_PER_SECOND": 2000,
    # Per agent name, an existing agent endpoint the workers' gateway calls (agents.gateway):
    # {"assistant": {"protocol": "agui" | "aisdk" | "openai", "url": "...", "headers": {}}}.
    "AGENT_GATEWAYS": {},
    # --- Durable Streams door (docs/sessions/durable-streams.md) ---
    # Names starting with this prefix are anonymous (public) streams anyone may create, read,
    # append to and delete; "" opens every name not owned by a user; None: no anonymous streams.
    "ANONYMOUS_STREAM_PREFIX": None,
    # Ceilings of anonymous streams: how many may exist at once (site-wide), how many bytes
    # each may hold, and the longest each may live in seconds (a stream created without a TTL
    # or an expiry expires this long after its creation).
    "ANONYMOUS_MAX_STREAMS": 10_000,
    "ANONYMOUS_MAX_STREAM_BYTES": 4 * 1024 * 1024,
    "ANONYMOUS_MAX_TTL": 7 * 24 * 3600,
    # A lone plain append on PostgreSQL runs on the event loop, over one connection per
    # worker of its own, instead of the log's writer thread (log/lanes.py), for every door.
    "STREAMS_LOOP_CONNECTION": True,
    # Seconds a long-poll waits for new data before answering 204 (SSE: between keep-alives).
    "LONG_POLL_TIMEOUT": 20.0,
    # Seconds after which the server ends an SSE response (clients reconnect from the offset).
    "SSE_MAX_SECONDS": 60.0,
    # --- AG-UI and AI SDK doors (docs/sessions/agui.md, docs/sessions/aisdk.md) ---
    # Seconds a POST waits for an agent to start a run for the message it sent; then the
    # stream ends with an error (the message stays in the session).
    "DOORS_RUN_START_TIMEOUT": 30.0,
    # Seconds between SSE keep-alive comments while a door's stream has nothing to send.
    "DOORS_KEEPALIVE_SECONDS": 15.0,
}


@cache
def get_config() -> dict[str, Any]:
    return {**DEFAULTS, **getattr(settings, "SESSIONS_APP", {})}


def setting(name: str) -> Any:
    return get_config()[name]


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "SESSIONS_APP":
        get_config.cache_clear()


def connect_signals() -> None:
    from django.core.signals import setting_changed  # not django.test: its client and utils

    setting_changed.connect(_reset, dispatch_uid="sessions_app.conf.reset")
