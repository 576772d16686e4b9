"""What every mlexec REST router shares: authentication, the coded error answers, and who is
asking (the principal and the projects it may see).

What a caller may not see answers 404, exactly like what does not exist. Every error body is
``{"code", "message", "detail"}``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Field, Schema
from ninja.pagination import LimitOffsetPagination
from ninja.security import HttpBearer, SessionAuth

from mlexec_app import keys, services
from mlexec_app.exceptions import MlexecError, NotFound
from mlexec_app.models import ApiKey, Intervention, Project, Run
from mlexec_app.schemas import ErrorOut


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer mlx_...``; the request's ``auth`` becomes the ApiKey."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        return keys.authenticate(token)


class CookieAuth(SessionAuth):
    """The Django session cookie. CSRF is checked only when the cookie authenticates the
    request, so a write with no credential or a wrong key answers 401 ``unauthenticated``
    (not a CSRF 403), while a cookie write without the CSRF token still answers 403."""

    def _get_key(self, request: HttpRequest) -> str | None:
        if not request.user.is_authenticated:
            return None
        return super()._get_key(request)


# Codes for the errors django-ninja answers itself, before a handler runs.
NINJA_CODES = {
    400: "malformed_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    422: "invalid_input",
}


def domain_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    """Answer our own exceptions with their status and code, from inside the handler.

    Caught here rather than left to the API's exception handlers: those belong to the site,
    and django-ninja's catch-all answers a plain 500 traceback while DEBUG is on.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            return view(request, *args, **kwargs)
        except MlexecError as exc:
            return JsonResponse(exc.as_dict(), status=exc.status)

    return wrapper


def coded_errors(run: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Give django-ninja's own error responses a machine-readable ``code``.

    Validation, authentication and unparsable JSON are answered by ninja before a handler
    runs; this wraps the whole operation, so the app needs nothing from the site's NinjaAPI.
    """

    @functools.wraps(run)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _body_too_big(request) or _with_code(run(request, *args, **kwargs))

    return wrapper


def _body_too_big(request: HttpRequest) -> HttpResponse | None:
    """A coded 413 for a body over Django's DATA_UPLOAD_MAX_MEMORY_SIZE, read before django-ninja
    does: its RequestDataTooBig became Django's HTML "Bad Request (400)" page, with no code."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    try:
        request.body  # noqa: B018 (read here so that the refusal is ours)
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = {"code": "body_too_large", "message": f"The body is larger than {limit} bytes.",
                "detail": {"limit": limit}}  # fmt: skip
        return JsonResponse(body, status=413)
    return None


def _with_code(response: HttpResponse) -> HttpResponse:
    if response.status_code < 400 or not response.get("Content-Type", "").startswith(
        "application/json"
    ):
        return response
    try:
        body = json.loads(response.content)
    except ValueError:
        return response
    if not isinstance(body, dict) or "code" in body:
        return response
    detail = body.get("detail")
    message = detail if isinstance(detail, str) else "The request is invalid; see detail."
    code = NINJA_CODES.get(response.status_code, "error")
    coded = {
        "code": code,
        "message": message,
        "detail": None if isinstance(detail, str) else detail,
    }
    return JsonResponse(coded, status=response.status_code)


# Documented in the OpenAPI schema: every error body is an ErrorOut.
ERRORS: dict[frozenset[int], type[ErrorOut]] = {
    frozenset({400, 401, 403, 404, 409, 413, 422}): ErrorOut
}


# --- pages ---------------------------------------------------------------------------------------


class BoundedPagination(LimitOffsetPagination):
    """Every list comes in pages: ``items``, ``count`` and ``next_offset`` (``null`` on the last).

    Limit and offset are bounded, so no page request reaches the database as an overflow, and no
    list answers with everything it holds: a caller may create any number of rows.
    """

    class Input(Schema):
        limit: int = Field(100, ge=1, le=1000)
        offset: int = Field(0, ge=0, le=10**9)

    class Output(Schema):
        items: list[Any]
        count: int
        next_offset: int | None = Field(
            None, description="Where the next page starts (pass it as offset); null on the last."
        )

    def paginate_queryset(
        self, queryset: QuerySet[Any], pagination: Any, request: HttpRequest, **params: Any
    ) -> dict[str, Any]:
        start, end = pagination.offset, pagination.offset + pagination.limit
        count = self._items_count(queryset)
        return {"items": queryset[start:end], "count": count, "next_offset": _next(end, count)}


def _next(end: int, count: int) -> int | None:
    return end if end < count else None


# --- who is asking -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    user: Any
    key: ApiKey | None


def principal(request: HttpRequest) -> Principal:
    auth = request.auth  # type: ignore[attr-defined]
    if isinstance(auth, ApiKey):
        return Principal(auth.owner, auth)
    return Principal(auth, None)


def visible(request: HttpRequest) -> QuerySet[Project]:
    who = principal(request)
    if who.key is not None:
        return keys.reachable_projects(who.key)
    return Project.objects.filter(owner=who.user)


def project_of(request: HttpRequest, ref: str) -> Project:
    return services.find_project(ref, visible(request))


def run_of(request: HttpRequest, run_id: int) -> Run:
    run = Run.objects.filter(pk=run_id, project__in=visible(request)).first()
    if run is None:
        raise NotFound(f"No run {run_id}.")
    return run


def intervention_of(request: HttpRequest, intervention_id: int) -> Intervention:
    found = Intervention.objects.filter(pk=intervention_id, project__in=visible(request)).first()
    if found is None:
        raise NotFound(f"No intervention {intervention_id}.")
    return found
