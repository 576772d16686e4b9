"""What a run cost and what a user thought of an answer: two events on the log.

Both are AG-UI ``CUSTOM`` events (AG-UI has no usage or feedback event, and a CUSTOM event
passes through every door and adapter untouched)::

    {"type": "CUSTOM", "run": "r1",
     "data": {"name": "sessions.USAGE", "value": {"model": "gpt-4o-mini", "input_tokens": 812,
              "output_tokens": 64, "cost": 0.00016, "currency": "USD",
              "first_token_ms": 420, "latency_ms": 1830}}}

    {"type": "CUSTOM", "message": "a-1",
     "data": {"name": "sessions.FEEDBACK", "value": {"message": "a-1", "rating": "down",
              "comment": "too long", "correction": "Paris.", "user": "ana"}}}

A usage report is validated like any event a client publishes. Feedback is written by the
server only (its feedback door sets ``user`` from the credential); a client that publishes a
``sessions.FEEDBACK`` event itself is refused, so no one can rate in another user's name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from sessions_app.domain.errors import BadEvent, BadRequest

USAGE: Final = "sessions.USAGE"
FEEDBACK: Final = "sessions.FEEDBACK"
RATINGS: Final = frozenset({"up", "down"})

MAX_MODEL: Final = 200
MAX_CURRENCY: Final = 8
MAX_COMMENT: Final = 2_000
MAX_CORRECTION: Final = 32_000
MAX_NUMBER: Final = 1e15  # beyond any real token count, cost or latency

COUNTS: Final = ("input_tokens", "output_tokens")
AMOUNTS: Final = ("cost", "first_token_ms", "latency_ms")
USAGE_KEYS: Final = frozenset({"model", "currency", *COUNTS, *AMOUNTS})


def validate_usage(value: object) -> dict[str, Any]:
    """Return the usage report as stored, or raise BadEvent (a bad field is named)."""
    if not isinstance(value, dict):
        raise BadEvent(f"{USAGE} needs data.value as a JSON object")
    extra = set(value) - USAGE_KEYS
    if extra:
        raise BadEvent(f"unknown usage fields {sorted(extra)}", known=sorted(USAGE_KEYS))
    for key, limit in (("model", MAX_MODEL), ("currency", MAX_CURRENCY)):
        text = value.get(key)
        if text is not None and (not isinstance(text, str) or not 0 < len(text) <= limit):
            raise BadEvent(f"usage {key!r} must be a string of 1 to {limit} characters")
    for key in COUNTS:
        count = value.get(key)
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_NUMBER
        ):
            raise BadEvent(f"usage {key!r} must be a whole number from 0 to {MAX_NUMBER:g}")
    for key in AMOUNTS:
        amount = value.get(key)
        if amount is not None and (
            isinstance(amount, bool)
            or not isinstance(amount, int | float)
            or not math.isfinite(amount)
            or not 0 <= amount <= MAX_NUMBER
        ):
            raise BadEvent(f"usage {key!r} must be a finite number from 0 to {MAX_NUMBER:g}")
    return dict(value)


def add_usage(total: Mapping[str, Any] | None, report: Mapping[str, Any]) -> dict[str, Any]:
    """A run's usage after one more report: counts, cost and latency summed, the time to the
    first token of the first report kept, ``model`` the latest, ``reports`` how many. A cost
    in another currency than the first report's is not added (it cannot be)."""
    out: dict[str, Any] = dict(total) if total else {"reports": 0}
    out["reports"] = int(out.get("reports", 0)) + 1
    if isinstance(report.get("model"), str):
        out["model"] = report["model"]
    for key in (*COUNTS, "latency_ms"):
        if _number(report.get(key)):
            out[key] = out.get(key, 0) + report[key]
    if _number(report.get("first_token_ms")) and "first_token_ms" not in out:
        out["first_token_ms"] = report["first_token_ms"]
    currency = report.get("currency") if isinstance(report.get("currency"), str) else None
    if _number(report.get("cost")):
        if "cost" not in out:
            out["cost"] = report["cost"]
            if currency:
                out["currency"] = currency
        elif currency is None or currency == out.get("currency"):
            out["cost"] = out["cost"] + report["cost"]
    return out


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def feedback_value(
    message: object, rating: object, comment: object = None, correction: object = None
) -> dict[str, Any]:
    """The checked rating of a message (without its user), or raise BadRequest."""
    if not isinstance(message, str) or not 0 < len(message) <= 128 or "\x00" in message:
        raise BadRequest("'message' must be a message id", field="message")
    if not isinstance(rating, str) or rating not in RATINGS:  # a list is no rating (nor hashable)
        raise BadRequest(f"'rating' must be one of {sorted(RATINGS)}", field="rating")
    value: dict[str, Any] = {"message": message, "rating": rating}
    for key, text, limit in (
        ("comment", comment, MAX_COMMENT),
        ("correction", correction, MAX_CORRECTION),
    ):
        if text is None or text == "":
            continue
        if not isinstance(text, str) or len(text) > limit or "\x00" in text:
            raise BadRequest(f"{key!r} must be a string of at most {limit} characters", field=key)
        value[key] = text
    return value


def feedback_event(value: Mapping[str, Any], user: str) -> dict[str, Any]:
    """The event a feedback door appends: ``value`` (from ``feedback_value``) by ``user``."""
    return {
        "type": "CUSTOM",
        "message": value["message"],
        "data": {"name": FEEDBACK, "value": {**value, "user": user}},
    }


def check_custom(event: Mapping[str, Any]) -> None:
    """The vocabulary's check of a CUSTOM event a client publishes (``events.RULES``)."""
    data = event.get("data", {})
    name = data.get("name")
    if name == FEEDBACK:
        raise BadEvent(
            "feedback is written by the server: use the 'feedback' op or "
            "POST /api/sessions/<name>/feedback",
            reason="feedback_door",
        )
    if name == USAGE:
        if not event.get("run"):
            raise BadEvent(f"{USAGE} needs 'run' (the run whose usage it is)")
        validate_usage(data.get("value"))
