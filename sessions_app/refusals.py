"""How REST and the AG-UI and AI SDK doors answer a refused request: the error's code,
message and details as JSON, under the HTTP status the error carries (``domain.errors``).
The Durable Streams door answers in its protocol's own form (``streams.views``)."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, JsonResponse

from sessions_app.domain.errors import BadRequest, SessionError


def error_response(exc: SessionError) -> JsonResponse:
    return JsonResponse(exc.as_dict(), status=exc.status)


SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")
# A number that may be too large for a float (Python reads it as infinity): an exponent of
# three digits or more, or 309 digits in a row.
HUGE_NUMBER = re.compile(rb"[eE][+-]?\d{3}|\d{309}")


def _unstorable(request: HttpRequest, kwargs: dict[str, Any]) -> str | None:
    """Why the body or a path parameter holds text no engine can store, if it does, so that
    every engine refuses it up front, the same way: NUL (PostgreSQL's text cannot hold it),
    or a lone surrogate such as \\ud83d (half of a character: it has no UTF-8 form)."""
    body = request.body if request.method in ("POST", "PUT", "PATCH") else b""
    if b"\\u0000" in body or b"\x00" in body or any("\x00" in str(v) for v in kwargs.values()):
        return "text cannot contain NUL characters"
    suspect = b"NaN" in body or b"Infinity" in body or HUGE_NUMBER.search(body)
    if suspect and _has_non_finite(body):
        return (
            "JSON has no NaN or Infinity, nor numbers past a float's range such as 1e400 "
            "(Python's parser would accept them; no reader could)"
        )
    if SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(json.loads(body), ensure_ascii=False).encode()
        except UnicodeEncodeError:
            return "text cannot contain a lone surrogate (half of a character, such as \\ud83d)"
        except (ValueError, RecursionError):
            pass  # not JSON: the schema's validation answers
    return None


class _NonFinite(ValueError):
    pass


def _non_finite(constant: str) -> Any:
    raise _NonFinite(constant)


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: a number JSON allows, past what a float holds
        raise _NonFinite(text)
    return value


def _has_non_finite(body: bytes) -> bool:
    """Whether the body is JSON with a bare NaN or ±Infinity (not one inside a string), or a
    number too large for a float (Python reads it as infinity)."""
    try:
        json.loads(body, parse_constant=_non_finite, parse_float=_finite)
    except _NonFinite:
        return True
    except (ValueError, RecursionError):
        pass  # not JSON: the schema's validation answers
    return False


def domain_errors(view: Callable[..., Any]) -> Callable[..., Any]:
    """Answer SessionError with its status and a body carrying its code; nothing was written.
    Text no engine can store is refused first, the same way for every engine."""
    if asyncio.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            unstorable = _unstorable(request, kwargs)
            if unstorable:
                return error_response(BadRequest(unstorable))
            try:
                return await view(request, *args, **kwargs)
            except SessionError as exc:
                return error_response(exc)

        return async_wrapper

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        unstorable = _unstorable(request, kwargs)
        if unstorable:
            return error_response(BadRequest(unstorable))
        try:
            return view(request, *args, **kwargs)
        except SessionError as exc:
            return error_response(exc)

    return wrapper
