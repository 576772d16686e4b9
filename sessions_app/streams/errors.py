"""Errors the Durable Streams door adds to the log's hierarchy, and its statuses.

SessionError (sessions_app.domain.errors)
 ├── ContentTypeMismatch (a Conflict) 409: append of another type than the stream's
 ├── Forbidden (the log's)    403: visible, but not yours to do this with
 ├── Gone                     410: soft-deleted stream (kept for its forks)
 ├── PayloadTooLarge          413
 └── Unauthorized             401: a token that does not verify

Every error answers with its own ``status``, except where the protocol says otherwise.
"""

from __future__ import annotations

from sessions_app.domain.errors import (
    Conflict,
    Forbidden,
    LimitExceeded,
    ProducerStaleEpoch,
    SessionError,
)

__all__ = ["ContentTypeMismatch", "Forbidden", "Gone", "PayloadTooLarge", "Unauthorized"]


class ContentTypeMismatch(Conflict):
    code = "content_type_mismatch"


class Gone(SessionError):
    code = "gone"
    status = 410


class PayloadTooLarge(SessionError):
    code = "payload_too_large"
    status = 413


class Unauthorized(SessionError):
    code = "unauthorized"
    status = 401


# The protocol's own answers: a stale producer epoch is 403 (the other doors: 409, a
# conflict), and any limit is 413 (a stream has no frame rate).
PROTOCOL_STATUS: tuple[tuple[type[SessionError], int], ...] = (
    (ProducerStaleEpoch, 403),
    (LimitExceeded, 413),
)


def status_of(exc: SessionError) -> int:
    for cls, status in PROTOCOL_STATUS:
        if isinstance(exc, cls):
            return status
    return exc.status
