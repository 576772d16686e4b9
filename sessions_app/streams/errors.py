"""Errors the Durable Streams door adds to the log's hierarchy, and their HTTP statuses.

SessionError (sessions_app.domain.errors)
 ├── ContentTypeMismatch (a Conflict) 409: append of another type than the stream's
 ├── Forbidden        403: visible, but not yours to do this with
 ├── Gone             410: soft-deleted stream (kept for its forks)
 ├── PayloadTooLarge  413
 └── Unauthorized     401: a token that does not verify
"""

from __future__ import annotations

from sessions_app.domain.errors import (
    BadRequest,
    Conflict,
    LimitExceeded,
    NotFound,
    OffsetExpired,
    ProducerSeqGap,
    ProducerStaleEpoch,
    SessionError,
    StreamClosed,
    Unavailable,
)


class ContentTypeMismatch(Conflict):
    code = "content_type_mismatch"


class Forbidden(SessionError):
    code = "forbidden"


class Gone(SessionError):
    code = "gone"


class PayloadTooLarge(SessionError):
    code = "payload_too_large"


class Unauthorized(SessionError):
    code = "unauthorized"


# Most specific first: the first class an error is an instance of decides.
STATUS: tuple[tuple[type[SessionError], int], ...] = (
    (BadRequest, 400),
    (Unauthorized, 401),
    (ProducerStaleEpoch, 403),
    (Forbidden, 403),
    (NotFound, 404),
    (StreamClosed, 409),
    (ProducerSeqGap, 409),
    (Conflict, 409),
    (Gone, 410),
    (OffsetExpired, 410),
    (PayloadTooLarge, 413),
    (LimitExceeded, 413),
    (Unavailable, 503),
)


def status_of(exc: SessionError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500
