"""The permission matrix: every operation against every actor, and what each gets.

This table is the single source of truth for ``tests/test_permission_matrix.py`` (which
performs every cell against the real apps) and for ``docs/permissions.md`` (rendered from it;
``python -m tests.permission_matrix_table`` rewrites the page, and the test fails when the page
and the table disagree).

Every URL pattern of the demo site (outside ``admin/``) and every WebSocket op is either an
operation here or in ``EXEMPT`` with its reason; the test walks the URL resolver and the
consumer's ``OPERATIONS`` and fails on anything in neither, so a new route cannot escape.

Cells: ``allow`` (the operation succeeds), ``unlisted`` (a list that succeeds without
naming the resource), ``404`` (refused exactly as if the resource did not exist: same status,
same body), ``409`` (a name that is taken, answered exactly like a name reserved for the site),
``403`` (refused as forbidden: the caller may see the resource but not do this, or the
credential may never do this), ``401`` (refused as unauthenticated; a page redirects to the
login page). Over the WebSocket, ``404`` is an error frame with code ``not_found`` and ``401``
is an ``unauthenticated`` error frame followed by close code 4401. ``BUGS`` lists cells where
the code disagrees with this table; those cells run as strict expected failures until fixed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ALLOW, UNLISTED, NOT_FOUND, TAKEN, FORBIDDEN, UNAUTHENTICATED = (
    "allow", "unlisted", "404", "409", "403", "401",
)  # fmt: skip

ACTORS: dict[str, str] = {
    "owner": "the session's (project's, key's) owner",
    "member": "a member of the session (mlexec projects and keys have no members: another user)",
    "other user": "a signed-in user with no relation to the resource",
    "anonymous": "no credentials at all",
    "key scoped elsewhere": "the owner's API key, scoped to another session (project)",
    "emptied scope": "the owner's API key, scoped to a session (project) since deleted",
    "revoked key": "the owner's API key, revoked",
    "expired token": "the owner's signed token, older than TOKEN_MAX_AGE",
}

# How each actor presents itself at each door (what the test sends).
CREDENTIALS: dict[str, str] = {
    "WebSocket": "owner, member, other user: `?token=` (signed token); keys: "
    "`Authorization: Bearer dsk_…` on the handshake; expired token: `?token=`",
    "REST": "owner, member, other user and keys: `Authorization: Bearer dsk_…`; "
    "expired token: `Authorization: Bearer <token>`",
    "Durable Streams": "owner, member, other user and the expired token: `Authorization: Bearer "
    "<signed token>`; keys: `Authorization: Bearer dsk_…` (this door takes tokens, not keys)",
    "AG-UI / AI SDK": "owner, member, other user and keys: `Authorization: Bearer dsk_…`; "
    "expired token: `Authorization: Bearer <token>`",
    "mlexec": "owner, member (a user who is not the project's owner), other user and keys: "
    "`Authorization: Bearer mlx_…`; expired token: `Authorization: Bearer <token>`",
    "key management": "owner, member, other user: the session cookie (people manage keys); "
    "keys: `Authorization: Bearer dsk_…` (sessions) or `mlx_…` (mlexec); expired token: "
    "`Authorization: Bearer <token>`",
    "pages": "owner, member, other user: the session cookie; keys and the expired token: "
    "`Authorization: Bearer …`, which pages do not read (they ask for the cookie)",
}


@dataclass(frozen=True)
class Operation:
    name: str
    door: str
    call: str  # "METHOD /path/{placeholder}" or a WebSocket frame
    expected: tuple[str, ...]  # one cell per actor, in ACTORS order
    writes: bool = False
    # An allowed call changes what later cells would see (ends a run, deletes the stream,
    # adds a member...): the test builds the world afresh after it.
    disturbs: bool = False


A, L, N, C, F, U = ALLOW, UNLISTED, NOT_FOUND, TAKEN, FORBIDDEN, UNAUTHENTICATED
SESSION_USE = (A, A, N, U, N, N, U, U)  # owner and members use a session
OWNER_ONLY = (A, N, N, U, N, N, U, U)  # only the owner manages it
SIGNED_IN = (A, A, A, U, A, A, U, U)  # anyone authenticated; names no resource
SESSION_LIST = (A, A, L, U, L, L, U, U)
WORKER = (A, A, A, U, A, A, U, U)  # any key; it acts on no one's session but its own
WS_WORKER = (F, F, F, U, A, A, U, U)  # the users' sockets here carry signed tokens: no claims
CREATE_SESSION = (A, A, A, U, F, F, U, U)  # a scoped key makes no new sessions
DS = (A, A, N, N, U, U, U, U)  # keys are not credentials here: 401
DS_CREATE = (A, A, C, U, U, U, U, U)  # someone else's name: taken, like a reserved one
DS_DELETE = (A, F, N, N, U, U, U, U)  # members may read and write, not delete
MLEXEC = (A, N, N, U, N, N, U, U)
MLEXEC_LIST = (A, L, L, U, L, L, U, U)
MLEXEC_CREATE = (A, A, A, U, F, F, U, U)  # a scoped key makes no new projects
SESSION_KEYS = (A, N, N, U, N, N, U, U)  # a key manages no keys: 404 like a missing one
SESSION_KEY_FOR = (A, A, N, U, N, N, U, U)  # a key scoped to a session one may use
SESSION_KEY_LIST = (A, L, L, U, N, N, U, U)
MLEXEC_KEYS = (A, N, N, U, F, F, U, U)  # a key manages no keys: 403 session_required
MLEXEC_KEY_LIST = (A, L, L, U, F, F, U, U)
PAGE_SESSION = (A, A, N, U, U, U, U, U)  # pages read the cookie only
PAGE_SESSION_LIST = (A, A, L, U, U, U, U, U)
PAGE_SIGNED_IN = (A, A, A, U, U, U, U, U)
PAGE_PROJECT = (A, N, N, U, U, U, U, U)
PAGE_PROJECT_LIST = (A, L, L, U, U, U, U, U)

S, M = "/api/sessions", "/api/mlexec"
OPERATIONS: tuple[Operation, ...] = (
    # --- the session log, over REST -----------------------------------------------------------
    Operation("create", "REST", f"POST {S}/", CREATE_SESSION, writes=True),
    Operation("list", "REST", f"GET {S}/", SESSION_LIST),
    Operation("read", "REST", f"GET {S}/{{name}}", SESSION_USE),
    Operation("snapshot", "REST", f"GET {S}/{{name}}/snapshot", SESSION_USE),
    Operation("history", "REST", f"GET {S}/{{name}}/events", SESSION_USE),
    Operation("history long-poll", "REST", f"GET {S}/{{name}}/events/wait", SESSION_USE),
    Operation("publish", "REST", f"POST {S}/{{name}}/events", SESSION_USE, writes=True),
    Operation("send message", "REST", f"POST {S}/{{name}}/messages", SESSION_USE, True),
    Operation("cancel", "REST", f"POST {S}/{{name}}/cancel", SESSION_USE, True, True),
    Operation("steer", "REST", f"POST {S}/{{name}}/steer", SESSION_USE, writes=True),
    Operation("interrupt", "REST", f"POST {S}/{{name}}/interrupt", SESSION_USE, True, True),
    Operation("rate a message", "REST", f"POST {S}/{{name}}/feedback", SESSION_USE, writes=True),
    Operation("list runs", "REST", f"GET {S}/{{name}}/runs", SESSION_USE),
    Operation("start run", "REST", f"POST {S}/{{name}}/runs", SESSION_USE, writes=True),
    Operation("finish run", "REST", f"POST {S}/{{name}}/runs/r1/finish", SESSION_USE, True, True),
    Operation("fail run", "REST", f"POST {S}/{{name}}/runs/r1/fail", SESSION_USE, True, True),
    Operation("run heartbeat", "REST", f"POST {S}/{{name}}/runs/r1/heartbeat", SESSION_USE, True),
    Operation("presence", "REST", f"GET {S}/{{name}}/presence", SESSION_USE),
    Operation("manage members", "REST", f"POST {S}/{{name}}/members", OWNER_ONLY, True, True),
    Operation("remove member", "REST", f"DELETE {S}/{{name}}/members/dave", OWNER_ONLY, True, True),
    Operation("change session", "REST", f"PATCH {S}/{{name}}", OWNER_ONLY, writes=True),
    # Agent workers: a claim takes turns of the sessions the key reaches (none: an empty list);
    # renew and release answer only for the turns the worker holds. API keys only.
    Operation("claim turns", "REST", f"POST {S}/turns/claim", WORKER, True, True),
    Operation("renew turns", "REST", f"POST {S}/turns/renew", WORKER, True),
    Operation("release turn", "REST", f"POST {S}/turns/release", WORKER, True, True),
    # --- the session log, over the WebSocket -------------------------------------------------
    Operation("ping", "WebSocket", '{"op": "ping"}', SIGNED_IN),
    Operation("subscribe", "WebSocket", '{"op": "subscribe"}', SESSION_USE),
    Operation("unsubscribe", "WebSocket", '{"op": "unsubscribe"}', SESSION_USE),
    Operation("publish", "WebSocket", '{"op": "publish"}', SESSION_USE, writes=True),
    Operation("send message", "WebSocket", '{"op": "send_message"}', SESSION_USE, True),
    Operation("cancel", "WebSocket", '{"op": "cancel", "run": …}', SESSION_USE, True, True),
    Operation("steer", "WebSocket", '{"op": "steer", "run": …}', SESSION_USE, writes=True),
    Operation("interrupt", "WebSocket", '{"op": "interrupt"}', SESSION_USE, True, True),
    Operation("run heartbeat", "WebSocket", '{"op": "heartbeat", "run": …}', SESSION_USE, True),
    Operation("rate a message", "WebSocket", '{"op": "feedback"}', SESSION_USE, writes=True),
    Operation("presence", "WebSocket", '{"op": "presence"}', SESSION_USE),
    # A worker's claim over its socket: API keys only, as at the REST door (a browser's
    # signed token or cookie may not claim: 403).
    Operation("claim turns", "WebSocket", '{"op": "claim"}', WS_WORKER, True, True),
    Operation("stop a waiting claim", "WebSocket", '{"op": "stop_claim"}', SIGNED_IN),
    Operation("renew turns", "WebSocket", '{"op": "renew"}', WS_WORKER, True),
    Operation("release turn", "WebSocket", '{"op": "release"}', WS_WORKER, True, True),
    # --- Durable Streams ----------------------------------------------------------------------
    Operation("create", "Durable Streams", "PUT /v1/stream/{name}", DS_CREATE, writes=True),
    Operation("read", "Durable Streams", "GET /v1/stream/{name}", DS),
    Operation("metadata", "Durable Streams", "HEAD /v1/stream/{name}", DS),
    Operation("append", "Durable Streams", "POST /v1/stream/{name}", DS, writes=True),
    Operation(
        "delete", "Durable Streams", "DELETE /v1/stream/{name}", DS_DELETE, True, True
    ),  # fmt: skip
    # --- AG-UI and the AI SDK -----------------------------------------------------------------
    Operation("AG-UI run", "AG-UI / AI SDK", "POST /sessions/agui/", SESSION_USE, writes=True),
    Operation(
        "AG-UI connect", "AG-UI / AI SDK", "GET /sessions/agui/{name}/connect", SESSION_USE
    ),  # fmt: skip
    Operation(
        "AG-UI cancel",
        "AG-UI / AI SDK",
        "POST /sessions/agui/{name}/cancel",
        SESSION_USE,
        writes=True,
        disturbs=True,
    ),  # fmt: skip
    Operation(
        "AI SDK chat", "AG-UI / AI SDK", "POST /sessions/aisdk/chat", SESSION_USE, writes=True
    ),  # fmt: skip
    Operation(
        "AI SDK resume",
        "AG-UI / AI SDK",
        "GET /sessions/aisdk/chat/{name}/stream",
        SESSION_USE,
    ),  # fmt: skip
    Operation(
        "AI SDK stop",
        "AG-UI / AI SDK",
        "POST /sessions/aisdk/chat/{name}/stop",
        SESSION_USE,
        writes=True,
        disturbs=True,
    ),  # fmt: skip
    # --- mlexec -------------------------------------------------------------------------------
    Operation("list projects", "mlexec", f"GET {M}/projects", MLEXEC_LIST),
    Operation("create project", "mlexec", f"POST {M}/projects", MLEXEC_CREATE, writes=True),
    Operation("read", "mlexec", f"GET {M}/projects/{{ref}}", MLEXEC),
    Operation("update project", "mlexec", f"PATCH {M}/projects/{{ref}}", MLEXEC, writes=True),
    Operation("gates", "mlexec", f"GET {M}/projects/{{ref}}/gates", MLEXEC),
    Operation(
        "record assessment",
        "mlexec",
        f"POST {M}/projects/{{ref}}/assessments",
        MLEXEC,
        writes=True,
        disturbs=True,  # the plan reads the newest assessment
    ),  # fmt: skip
    Operation("assessments", "mlexec", f"GET {M}/projects/{{ref}}/assessments", MLEXEC),
    Operation("log run", "mlexec", f"POST {M}/projects/{{ref}}/runs", MLEXEC, writes=True),
    Operation("list runs", "mlexec", f"GET {M}/projects/{{ref}}/runs", MLEXEC),
    Operation("read run", "mlexec", f"GET {M}/runs/{{run}}", MLEXEC),
    Operation("update run", "mlexec", f"PATCH {M}/runs/{{run}}", MLEXEC, writes=True),
    Operation("log batch", "mlexec", f"POST {M}/runs/{{run}}/log-batch", MLEXEC, writes=True),
    Operation("metric history", "mlexec", f"GET {M}/runs/{{run}}/metrics/loss", MLEXEC),
    Operation(
        "record error analysis",
        "mlexec",
        f"POST {M}/projects/{{ref}}/error-analyses",
        MLEXEC,
        writes=True,
        disturbs=True,  # the plan's next step becomes that error category
    ),  # fmt: skip
    Operation("error analyses", "mlexec", f"GET {M}/projects/{{ref}}/error-analyses", MLEXEC),
    Operation("diagnosis", "mlexec", f"GET {M}/projects/{{ref}}/diagnosis", MLEXEC),
    Operation("plan", "mlexec", f"GET {M}/projects/{{ref}}/plan", MLEXEC),
    Operation(
        "adopt interventions",
        "mlexec",
        f"POST {M}/projects/{{ref}}/interventions",
        MLEXEC,
        writes=True,
    ),  # fmt: skip
    Operation("interventions", "mlexec", f"GET {M}/projects/{{ref}}/interventions", MLEXEC),
    Operation(
        "update intervention",
        "mlexec",
        f"PATCH {M}/interventions/{{intervention}}",
        MLEXEC,
        writes=True,
    ),  # fmt: skip
    Operation("cost curve", "mlexec", f"POST {M}/cost-curve", SIGNED_IN),
    Operation(
        "save cost model", "mlexec", f"PUT {M}/projects/{{ref}}/cost-model", MLEXEC, True
    ),  # fmt: skip
    Operation("cost model", "mlexec", f"GET {M}/projects/{{ref}}/cost-model", MLEXEC),
    Operation(
        "start diagnostic job",
        "mlexec",
        f"POST {M}/projects/{{ref}}/diagnostic-jobs",
        MLEXEC,
        writes=True,
    ),  # fmt: skip
    Operation(
        "start search", "mlexec", f"POST {M}/projects/{{ref}}/search-jobs", MLEXEC, True
    ),  # fmt: skip
    Operation(
        "resume search", "mlexec", f"POST {M}/diagnostic-jobs/{{search_job}}/resume", MLEXEC, True
    ),  # fmt: skip
    Operation(
        "diagnostic jobs", "mlexec", f"GET {M}/projects/{{ref}}/diagnostic-jobs", MLEXEC
    ),  # fmt: skip
    Operation("diagnostic job", "mlexec", f"GET {M}/diagnostic-jobs/{{job}}", MLEXEC),
    Operation(
        "cancel diagnostic job",
        "mlexec",
        f"POST {M}/diagnostic-jobs/{{queued_job}}/cancel",
        MLEXEC,
        writes=True,
        disturbs=True,
    ),  # fmt: skip
    Operation(
        "diagnostic plot",
        "mlexec",
        f"GET {M}/diagnostic-jobs/{{job}}/plots/learning-curve.svg",
        MLEXEC,
    ),  # fmt: skip
    # --- API keys: people manage them, keys do not --------------------------------------------
    Operation(
        "create session key", "key management", f"POST {S}/keys/", SESSION_KEY_FOR, True
    ),  # fmt: skip
    Operation("session keys", "key management", f"GET {S}/keys/", SESSION_KEY_LIST),
    Operation(
        "revoke session key",
        "key management",
        f"DELETE {S}/keys/{{key}}",
        SESSION_KEYS,
        writes=True,
        disturbs=True,
    ),  # fmt: skip
    Operation("create mlexec key", "key management", f"POST {M}/api-keys", MLEXEC_KEYS, True),
    Operation("mlexec keys", "key management", f"GET {M}/api-keys", MLEXEC_KEY_LIST),
    Operation(
        "revoke mlexec key",
        "key management",
        f"DELETE {M}/api-keys/{{mlkey}}",
        MLEXEC_KEYS,
        writes=True,
        disturbs=True,
    ),  # fmt: skip
    # --- pages --------------------------------------------------------------------------------
    Operation("chat list", "pages", "GET /chat/", PAGE_SESSION_LIST),
    Operation("chat room", "pages", "GET /chat/{name}/", PAGE_SESSION),
    Operation("new chat", "pages", "POST /chat/new/", PAGE_SIGNED_IN, writes=True),
    Operation("chat token", "pages", "POST /chat/token/?session={name}", PAGE_SESSION),
    Operation("mlexec projects", "pages", "GET /mlexec/", PAGE_PROJECT_LIST),
    Operation("mlexec project", "pages", "GET /mlexec/projects/{ref}/", PAGE_PROJECT),
    Operation(
        "label review", "pages", "GET /mlexec/projects/{ref}/jobs/{job}/labels/", PAGE_PROJECT
    ),  # fmt: skip
    Operation(
        "record label fixes",
        "pages",
        "POST /mlexec/projects/{ref}/jobs/{job}/labels/fix/",
        PAGE_PROJECT,
        writes=True,
    ),  # fmt: skip
    Operation(
        "label decision",
        "pages",
        "POST /mlexec/projects/{ref}/jobs/{job}/labels/{row}/",
        PAGE_PROJECT,
        writes=True,
    ),  # fmt: skip
    Operation("start search", "pages", "POST /mlexec/projects/{ref}/search/", PAGE_PROJECT, True),
    Operation(
        "error review", "pages", "GET /mlexec/projects/{ref}/jobs/{job}/errors/", PAGE_PROJECT
    ),  # fmt: skip
    Operation(
        "tag an error",
        "pages",
        "POST /mlexec/projects/{ref}/jobs/{job}/errors/{row}/",
        PAGE_PROJECT,
        writes=True,
    ),  # fmt: skip
    Operation(
        "add an error category",
        "pages",
        "POST /mlexec/projects/{ref}/jobs/{job}/errors/categories/",
        PAGE_PROJECT,
        writes=True,
    ),  # fmt: skip
    Operation(
        "corrected labels",
        "pages",
        "GET /mlexec/projects/{ref}/jobs/{job}/labels.csv",
        PAGE_PROJECT,
    ),  # fmt: skip
    Operation(
        "corrected labels (NPZ)",
        "pages",
        "GET /mlexec/projects/{ref}/jobs/{job}/labels.npz",
        PAGE_PROJECT,
    ),  # fmt: skip
)

# Routes of the demo site that are no operation of the matrix, each with why. A key is
# (method, route as the URL resolver spells it); "*" for a view that takes any method.
EXEMPT: dict[tuple[str, str], str] = {
    ("*", ""): "the landing page: public, names no resource",
    ("*", "chat/login/"): "the login form: public, acts on no one's resource",
    ("*", "chat/logout/"): "ends the caller's own login",
    ("*", "sessions/"): "a fixed text naming the app: public, reads nothing",
    ("*", "api/"): "the API's root: public, describes the API",
    ("*", "api/docs"): "the API's documentation page: public (see docs/security.md)",
    ("*", "api/openapi.json"): "the API's schema: public, describes the API",
    ("*", "health"): "liveness probe: public, reads nothing",
    ("*", "ready"): "readiness probe: public, says only whether the engines answer",
    ("*", "metrics"): "Prometheus metrics: closed unless METRICS_TOKEN or an allow-list is set "
    "(tested in tests/sessions_app/test_ops.py), no per-user data",
    ("OPTIONS", "v1/stream/<path:name>"): "CORS preflight: 204 before any lookup, reads nothing",
}

# (operation name, door, actor) -> what the code does instead, and why it is a bug.
BUGS: dict[tuple[str, str, str], str] = {}

WS_OP = re.compile(r'"op": "(\w+)"')


def op_id(op: Operation) -> str:
    return f"{op.door}: {op.name}"


def ws_op(op: Operation) -> str:
    """The WebSocket op a WebSocket operation sends."""
    found = WS_OP.search(op.call)
    assert found, op.call
    return found.group(1)


def cells() -> list[tuple[Operation, str, str]]:
    return [(op, actor, op.expected[i]) for op in OPERATIONS for i, actor in enumerate(ACTORS)]


def render() -> str:
    """docs/permissions.md, from the table."""
    actors = list(ACTORS)
    lines = [
        "# Permission matrix",
        "",
        "<!-- Generated from tests/permission_matrix_table.py by "
        "`python -m tests.permission_matrix_table`; do not edit by hand. -->",
        "",
        "Who may do what, for every door onto the session log, the mlexec API, API keys and "
        "the pages. Every cell is performed against the real apps by "
        "`tests/test_permission_matrix.py::test_permission_matrix` (in both test passes), "
        "which also checks that a refused write wrote nothing and that every `404` has exactly "
        "the status and body of a request for a session (project, run, job, key) that does "
        "not exist: nobody learns that a resource exists by being refused it. Every URL of "
        "the site and every WebSocket op is in this table or in the list of exempt routes "
        "below (`test_every_route_is_in_the_matrix`, `test_every_websocket_op_is_in_the_matrix`).",
        "",
        "- `allow`: the operation succeeds.",
        "- `unlisted`: the list succeeds and does not name the resource.",
        "- `404`: refused as `not_found`, indistinguishable from an absent resource.",
        "- `409`: the name is taken, answered exactly as a name reserved for the site is.",
        "- `403`: refused as forbidden: the caller may see the resource but not do this "
        "(a member deleting a stream), or the credential may never do this (a scoped key "
        "creating, an mlexec key managing keys).",
        "- `401`: refused as `unauthenticated` (over the WebSocket: an `unauthenticated` error "
        "frame, then close code 4401; a page redirects to the login page).",
        "",
        "| operation | door | request | " + " | ".join(actors) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in actors) + " |",
    ]
    for op in OPERATIONS:
        row = []
        for i, actor in enumerate(actors):
            mark = " (bug)" if (op.name, op.door, actor) in BUGS else ""
            row.append(f"{op.expected[i]}{mark}")
        call = op.call.replace("|", "\\|")
        lines.append(f"| {op.name} | {op.door} | `{call}` | " + " | ".join(row) + " |")
    lines += ["", "## Actors", ""]
    lines += [f"- **{name}**: {what}." for name, what in ACTORS.items()]
    lines += ["", "## Credentials used at each door", ""]
    lines += [f"- **{door}**: {how}." for door, how in CREDENTIALS.items()]
    lines += [
        "",
        "Browsers may also use the Django session cookie wherever a token is accepted; "
        "unsafe requests authenticated by the cookie need the CSRF token.",
        "",
        "Signed tokens: send them as `Authorization: Bearer <token>` wherever the client "
        "can set a header (REST, Durable Streams, AG-UI / AI SDK, agents). A browser's "
        "WebSocket (and EventSource) cannot, so there the token goes in the query string "
        "(`?token=`). A query string is easier to leak than a header: proxies and servers "
        "log request lines, and browsers keep URLs in their history. That is why tokens are "
        "short-lived (`TOKEN_MAX_AGE`, 300 s) and may be limited to the sessions they open; "
        "the demo site's logs (and `sessions_app.logs.JsonFormatter` / `RedactTokens` in "
        "yours) replace every `token=` value with `[redacted]`. Redact it in your proxy's "
        "access log too, and in daphne's, which it prints to stdout outside `LOGGING`: "
        "`make run` pipes it through `python -m sessions_app.logs`.",
        "",
        "## Routes outside the matrix",
        "",
        "Public or own-account routes that name no one's resource (the admin, under `admin/`, "
        "is Django's own):",
        "",
    ]
    lines += [
        f"- `{method if method != '*' else 'any'} /{route}`: {why}."
        for (method, route), why in EXEMPT.items()
    ]
    lines += ["", "## Known deviations", ""]
    if BUGS:
        lines += [f"- {door}, {name}, {actor}: {why}" for (name, door, actor), why in BUGS.items()]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


DOC = Path(__file__).resolve().parents[1] / "docs" / "permissions.md"

if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}")
