"""The permission matrix: every operation against every actor, and what each gets.

This table is the single source of truth for ``tests/test_permission_matrix.py`` (which
performs every cell against the real apps) and for ``docs/permissions.md`` (rendered from it;
``python -m tests.permission_matrix_table`` rewrites the page, and the test fails when the page
and the table disagree).

Cells: ``allow`` (the operation succeeds), ``404`` (refused exactly as if the resource did not
exist: same status, same body), ``401`` (refused as unauthenticated). Over the WebSocket,
``404`` is an error frame with code ``not_found`` and ``401`` is an ``unauthenticated`` error
frame followed by close code 4401. ``BUGS`` lists cells where the code disagrees with this
table; those cells run as strict expected failures until fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ALLOW, NOT_FOUND, UNAUTHENTICATED = "allow", "404", "401"

ACTORS: dict[str, str] = {
    "owner": "the session's (project's) owner",
    "member": "a member of the session (mlexec projects have no members)",
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
}


@dataclass(frozen=True)
class Operation:
    name: str
    door: str
    call: str
    expected: tuple[str, ...]  # one cell per actor, in ACTORS order
    writes: bool = False


A, N, U = ALLOW, NOT_FOUND, UNAUTHENTICATED
SESSION_USE = (A, A, N, U, N, N, U, U)  # owner and members use a session
OWNER_ONLY = (A, N, N, U, N, N, U, U)  # only the owner manages it
DS = (A, A, N, N, U, U, U, U)  # keys are not credentials here: 401
MLEXEC = (A, N, N, U, N, N, U, U)

OPERATIONS: tuple[Operation, ...] = (
    Operation("read", "REST", "GET /api/sessions/{name}", SESSION_USE),
    Operation("snapshot", "REST", "GET /api/sessions/{name}/snapshot", SESSION_USE),
    Operation("history", "REST", "GET /api/sessions/{name}/events", SESSION_USE),
    Operation("history long-poll", "REST", "GET /api/sessions/{name}/events/wait", SESSION_USE),
    Operation("subscribe", "WebSocket", '{"op": "subscribe"}', SESSION_USE),
    Operation("publish", "WebSocket", '{"op": "publish"}', SESSION_USE, writes=True),
    Operation("publish", "REST", "POST /api/sessions/{name}/events", SESSION_USE, writes=True),
    Operation("send message", "REST", "POST /api/sessions/{name}/messages", SESSION_USE, True),
    Operation("cancel", "WebSocket", '{"op": "cancel", "run": …}', SESSION_USE, writes=True),
    Operation("cancel", "REST", "POST /api/sessions/{name}/cancel", SESSION_USE, writes=True),
    Operation("steer", "WebSocket", '{"op": "steer", "run": …}', SESSION_USE, writes=True),
    Operation("steer", "REST", "POST /api/sessions/{name}/steer", SESSION_USE, writes=True),
    Operation("interrupt", "WebSocket", '{"op": "interrupt"}', SESSION_USE, writes=True),
    Operation("interrupt", "REST", "POST /api/sessions/{name}/interrupt", SESSION_USE, True),
    Operation("start run", "REST", "POST /api/sessions/{name}/runs", SESSION_USE, writes=True),
    Operation("presence", "WebSocket", '{"op": "presence"}', SESSION_USE),
    Operation("presence", "REST", "GET /api/sessions/{name}/presence", SESSION_USE),
    Operation("manage members", "REST", "POST /api/sessions/{name}/members", OWNER_ONLY, True),
    Operation("change session", "REST", "PATCH /api/sessions/{name}", OWNER_ONLY, writes=True),
    Operation("Durable Streams read", "Durable Streams", "GET /v1/stream/{name}", DS),
    Operation(
        "Durable Streams append", "Durable Streams", "POST /v1/stream/{name}", DS, writes=True
    ),
    Operation(
        "AG-UI cancel",
        "AG-UI / AI SDK",
        "POST /sessions/agui/{name}/cancel",
        SESSION_USE,
        writes=True,
    ),  # fmt: skip
    Operation(
        "AG-UI connect", "AG-UI / AI SDK", "GET /sessions/agui/{name}/connect", SESSION_USE
    ),  # fmt: skip
    Operation(
        "AI SDK stop",
        "AG-UI / AI SDK",
        "POST /sessions/aisdk/chat/{name}/stop",
        SESSION_USE,
        writes=True,
    ),  # fmt: skip
    Operation("mlexec read", "mlexec", "GET /api/mlexec/projects/{ref}", MLEXEC),
    Operation("mlexec log run", "mlexec", "POST /api/mlexec/projects/{ref}/runs", MLEXEC, True),
    Operation("mlexec diagnosis", "mlexec", "GET /api/mlexec/projects/{ref}/diagnosis", MLEXEC),
)

# (operation name, door, actor) -> what the code does instead, and why it is a bug. Empty:
# the REST long-poll and presence now answer 401 like every other endpoint (they said 404).
BUGS: dict[tuple[str, str, str], str] = {}


def op_id(op: Operation) -> str:
    return f"{op.door}: {op.name}"


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
        "Who may do what, for every door onto the session log and for the mlexec API. Every "
        "cell is performed against the real apps by `tests/test_permission_matrix.py::"
        "test_permission_matrix` (in both test passes), which also checks that a refused write "
        "wrote nothing and that every `404` has exactly the status and body of a request for "
        "a session (project) that does not exist: nobody learns that a resource exists by "
        "being refused it.",
        "",
        "- `allow`: the operation succeeds.",
        "- `404`: refused as `not_found`, indistinguishable from an absent resource.",
        "- `401`: refused as `unauthenticated` (over the WebSocket: an `unauthenticated` error "
        "frame, then close code 4401).",
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
        "access log too (daphne writes none unless given `--access-log`).",
        "",
        "## Known deviations",
        "",
    ]
    if BUGS:
        lines += [f"- {door}, {name}, {actor}: {why}" for (name, door, actor), why in BUGS.items()]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


DOC = Path(__file__).resolve().parents[1] / "docs" / "permissions.md"

if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}")
