"""What the agent SDK raises: a refused frame, a cancelled run, a closed client."""

from __future__ import annotations

from typing import Any


class PublishError(Exception):
    """The server refused a frame (a publish, a subscription, a cancel, ...): nothing of it was
    written. ``code`` is the server's error code (see docs/sessions/websocket.md), ``frame``
    the whole error frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.code = frame.get("code")
        self.frame = frame


class RunCancelled(Exception):
    """Raised by ``Run`` methods once a user cancelled the run; ``async with run`` absorbs it."""


class ConnectionClosed(Exception):
    """The client was closed while a request was waiting for its answer."""
