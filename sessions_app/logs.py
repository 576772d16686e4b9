"""Structured logs: one JSON object per line, with the session, run and producer ids.

Use it in ``LOGGING``::

    "formatters": {"json": {"()": "sessions_app.logs.JsonFormatter"}},

Log lines of sessions_app pass their ids with ``extra={"session": …, "run": …, "producer": …}``.

Signed tokens travel in query strings (``?token=`` on WebSocket and Durable Streams URLs, where
browsers cannot set a header), so request lines would carry them into log files. The formatter
redacts them, and ``RedactTokens`` does the same for any handler::

    "filters": {"redact_tokens": {"()": "sessions_app.logs.RedactTokens"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact_tokens"]}},

A server that writes request lines outside ``logging`` (daphne's access log goes straight to
stdout, query strings included) can be piped through this module, which redacts each line::

    daphne config.asgi:application | python -m sessions_app.logs
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

CONTEXT_KEYS = ("session", "run", "producer", "device", "user", "offset", "entries", "code")


# token= (ours) and access_token= (OAuth-style clients), in a query string or a logged URL.
TOKEN_IN_URL = re.compile(r"((?:^|[?&;\s\"'])(?:access_)?token=)[^&;\s\"']+", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the value of every ``token=`` parameter replaced."""
    return TOKEN_IN_URL.sub(r"\1" + REDACTED, text) if "token=" in text.lower() else text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("latin-1")).encode("latin-1")
    return value


class RedactTokens(logging.Filter):
    """Replace token values in a record's message and arguments (its format stays usable by
    any formatter, e.g. an access-log one that reads the arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_value(arg) for key, arg in record.args.items()}
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def redact_stream(source: Any, sink: Any) -> None:
    """Copy ``source`` to ``sink`` line by line, tokens redacted, flushing each line."""
    for line in source:
        sink.write(redact(line))
        sink.flush()


if __name__ == "__main__":
    import contextlib
    import sys

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops the server piped in, and us
        redact_stream(sys.stdin, sys.stdout)
