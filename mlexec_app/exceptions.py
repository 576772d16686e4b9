"""Errors of mlexec_app, each with a machine-readable ``code`` and an HTTP status.

::

    MlexecError
    ├── NotFound              404 not_found         (also for what you may not see)
    ├── Forbidden             403 forbidden         (authenticated, seen, but not allowed)
    ├── InvalidInput          422 invalid_input     (or a more precise code)
    └── Conflict              409 conflict          (state does not allow it)
        ├── InvalidTransition 409 invalid_transition
        └── StageGateFailed   409 stage_gate_failed

The REST API turns them into ``{"code": ..., "message": ..., "detail": ...}``.
"""

from __future__ import annotations

from typing import Any


class MlexecError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.detail = detail

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            body["detail"] = self.detail
        return body


class NotFound(MlexecError):
    status = 404
    code = "not_found"


class Forbidden(MlexecError):
    status = 403
    code = "forbidden"


class InvalidInput(MlexecError):
    status = 422
    code = "invalid_input"


class Conflict(MlexecError):
    status = 409
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class StageGateFailed(Conflict):
    code = "stage_gate_failed"
