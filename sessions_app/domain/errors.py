"""Errors of the session log, each with a stable machine-readable code.

SessionError
 ├── BadRequest            (the input is malformed; nothing was written)
 │    ├── BadOffset
 │    └── BadEvent
 ├── NotFound              (absent or forbidden: the same answer)
 ├── Forbidden             (an action the credential may never take, whatever the session)
 ├── Conflict
 │    ├── StreamClosed
 │    ├── ProducerStaleEpoch
 │    └── ProducerSeqGap
 ├── OffsetExpired         (below the retained range; subscribe with "snapshot")
 ├── LimitExceeded         (frame, event, rate or subscription limits)
 └── Unavailable           (the database did not answer; retry)
"""

from __future__ import annotations

from typing import Any


class SessionError(Exception):
    code = "error"
    retryable = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class BadRequest(SessionError):
    code = "bad_request"


class BadOffset(BadRequest):
    code = "bad_offset"


class BadEvent(BadRequest):
    code = "bad_event"


class NotFound(SessionError):
    code = "not_found"


class Conflict(SessionError):
    code = "conflict"


class StreamClosed(Conflict):
    code = "stream_closed"


class ProducerStaleEpoch(Conflict):
    code = "producer_stale_epoch"


class ProducerSeqGap(Conflict):
    code = "producer_seq_gap"


class OffsetExpired(SessionError):
    code = "offset_expired"


class LimitExceeded(SessionError):
    code = "limit_exceeded"


class Unavailable(SessionError):
    code = "unavailable"
    retryable = True


class RunEnded(Conflict):
    code = "run_ended"


class RunExists(Conflict):
    code = "run_exists"


class Unauthenticated(SessionError):
    code = "unauthenticated"


class Forbidden(SessionError):
    """Known caller, refused an action its credential does not allow (a scoped key creating)."""

    code = "forbidden"
