"""Errors of the session log, each with a stable machine-readable code and what it means on
the wire: the HTTP status every door answers with, and the WebSocket close code of an error
that ends the socket (None: the socket stays open and the error goes out as a frame).

SessionError                     status  close
 ├── BadRequest                    400           (the input is malformed; nothing was written)
 │    ├── BadOffset
 │    └── BadEvent
 ├── Unauthenticated               401    4401   (no credential, or one that does not verify)
 ├── Forbidden                     403           (an action the credential may never take)
 │    └── CsrfFailed                             (a cookie-authenticated write without the token)
 ├── NotFound                      404           (absent or forbidden: the same answer)
 ├── Conflict                      409
 │    ├── StreamClosed
 │    ├── ProducerStaleEpoch
 │    ├── ProducerSeqGap
 │    ├── RunEnded
 │    └── RunExists
 ├── OffsetExpired                 410           (below the retained range; use "snapshot")
 ├── LimitExceeded                 413           (frame, event, body or subscription limits)
 │    ├── RateLimited              429           (too many frames a second)
 │    └── SlowConsumer                    4008   (a socket that stopped reading its frames)
 └── Unavailable                   503           (the database did not answer; retry)

The doors turn an error into an answer in one place each: ``sessions_app.api.status_of``
(REST, the AG-UI and AI SDK doors, the chat) and ``sessions_app.streams.errors.status_of``
(Durable Streams, whose protocol answers a few errors with other statuses).
"""

from __future__ import annotations

from typing import Any


class SessionError(Exception):
    code = "error"
    status = 500  # an error no subclass describes is the server's fault
    close_code: int | None = None
    retryable = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class BadRequest(SessionError):
    code = "bad_request"
    status = 400


class BadOffset(BadRequest):
    code = "bad_offset"


class BadEvent(BadRequest):
    code = "bad_event"


class Unauthenticated(SessionError):
    code = "unauthenticated"
    status = 401
    close_code = 4401


class Forbidden(SessionError):
    """Known caller, refused an action its credential does not allow (a scoped key creating)."""

    code = "forbidden"
    status = 403


class CsrfFailed(Forbidden):
    code = "csrf_failed"


class NotFound(SessionError):
    code = "not_found"
    status = 404


class Conflict(SessionError):
    code = "conflict"
    status = 409


class StreamClosed(Conflict):
    code = "stream_closed"


class ProducerStaleEpoch(Conflict):
    code = "producer_stale_epoch"


class ProducerSeqGap(Conflict):
    code = "producer_seq_gap"


class RunEnded(Conflict):
    code = "run_ended"


class RunExists(Conflict):
    code = "run_exists"


class OffsetExpired(SessionError):
    code = "offset_expired"
    status = 410


class LimitExceeded(SessionError):
    code = "limit_exceeded"
    status = 413


class RateLimited(LimitExceeded):
    """Too many frames a second on one socket (same code: the ``limit`` detail says which)."""

    status = 429


class SlowConsumer(LimitExceeded):
    close_code = 4008


class Unavailable(SessionError):
    code = "unavailable"
    status = 503
    retryable = True
