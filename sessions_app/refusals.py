"""How REST and the AG-UI and AI SDK doors answer a refused request: the error's code,
message and details as JSON, under the HTTP status the error carries (``domain.errors``).
The Durable Streams door answers in its protocol's own form (``streams.views``)."""

from __future__ import annotations

from django.http import JsonResponse

from sessions_app.domain.errors import SessionError


def error_response(exc: SessionError) -> JsonResponse:
    return JsonResponse(exc.as_dict(), status=exc.status)
