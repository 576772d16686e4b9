"""Structured logs: one JSON object per line, with the session, run and producer ids.

Use it in ``LOGGING``::

    "formatters": {"json": {"()": "sessions_app.logs.JsonFormatter"}},

Log lines of sessions_app pass their ids with ``extra={"session": …, "run": …, "producer": …}``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

CONTEXT_KEYS = ("session", "run", "producer", "device", "user", "offset", "entries", "code")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)
