"""The feedback door's service: a user rates an assistant message, as an event on the log.

Every door (WebSocket ``feedback`` op, ``POST /api/sessions/<name>/feedback``, the SDK's
``session.feedback``) calls ``request``: it checks the rated message is an assistant message
of the session (from its fold), takes the user the door read from the credential (never
from the caller's input), and returns the append. The event and its fold:
``sessions_app.domain.judgement``.
"""

from __future__ import annotations

from typing import Any

from sessions_app import log
from sessions_app.conf import setting
from sessions_app.domain.errors import BadRequest, LimitExceeded, NotFound
from sessions_app.domain.events import encode_event
from sessions_app.domain.judgement import feedback_event, feedback_value


def request(
    user: str,
    session_pk: int,
    message: object,
    rating: object,
    comment: object = None,
    correction: object = None,
) -> log.AppendRequest:
    """The append of ``user``'s rating of ``message``; raises a coded error for bad input."""
    value = feedback_value(message, rating, comment, correction)
    rated = log.fold_session(session_pk).messages.get(value["message"])
    if rated is None:
        raise NotFound("no such message in this session", rated=value["message"])
    if rated.role != "assistant":
        raise BadRequest(
            "only an assistant message can be rated", reason="not_assistant", role=rated.role
        )
    event = feedback_event(value, user)
    body = encode_event(event, log.now_ms())
    if len(body.encode()) > setting("MAX_EVENT_BYTES"):
        raise LimitExceeded("the feedback is larger than an event may be", limit="event_bytes")
    item = log.Item(body, "CUSTOM", "", data=event["data"], agent="")
    return log.AppendRequest(session_pk, [item])


def ack(result: log.AppendResult, message: str) -> dict[str, Any]:
    from sessions_app.domain.offsets import format_offset

    offsets = [format_offset(seq) for seq in result.seqs]
    return {"duplicate": result.duplicate, "offsets": offsets, "message": message}
